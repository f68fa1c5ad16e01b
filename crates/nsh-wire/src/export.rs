//! The `nix-store --export` / `--import` stream.
//!
//! ```plain
//! stream = (u64 1, nar, u64 0x4558494e "NIXE", str path, strlist references,
//!           str deriver ("" = none), u64 0 | u64 1 str signature)* u64 0
//! ```
//! Mirrors Nix `src/libstore/export-import.cc`. Paths come dependencies first. The
//! NARs are validated with [`crate::nar`]; narHash/narSize are computed while reading.
//! Store-path syntax of the trailer is checked by [`ExportEntry::validate`] because
//! only the caller knows the store directory.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::{self, Read, Write};
use std::path::Path;

use crate::framing::{
    WireError, read_string_list_named, read_string_named, read_u64_named, write_bytes,
    write_string_list, write_u64,
};
use crate::nar::{self, NarError, NarSummary};
use crate::store_path::{StorePath, StorePathError};

/// Marker after each NAR ("NIXE" little-endian).
pub const EXPORT_MAGIC: u64 = 0x4558_494e;
/// Longest store path in a trailer.
pub const MAX_PATH: u64 = 4096;
/// Most references one path may have.
pub const MAX_REFERENCES: u64 = 1_000_000;
/// Longest legacy signature string.
pub const MAX_SIGNATURE: u64 = 64 * 1024;

/// One path of an export stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportEntry {
    pub path: String,
    pub references: Vec<String>,
    pub deriver: Option<String>,
    pub nar: NarSummary,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    #[error("malformed export stream (entry {index})")]
    Wire {
        index: usize,
        #[source]
        source: WireError,
    },
    #[error("bad NAR in export stream (entry {index})")]
    Nar {
        index: usize,
        #[source]
        source: NarError,
    },
    #[error("export stream entry {index}: expected marker 0 or 1, got {got}")]
    BadMarker { index: usize, got: u64 },
    #[error("export stream entry {index}: bad magic {got:#x} after the NAR (want 0x4558494e)")]
    BadMagic { index: usize, got: u64 },
    #[error("export stream entry {index}: bad signature flag {got}")]
    BadSignatureFlag { index: usize, got: u64 },
    #[error("export stream entry '{path}' names a bad store path")]
    BadPath {
        path: String,
        #[source]
        source: StorePathError,
    },
    #[error("writing export stream")]
    Io(#[source] io::Error),
}

impl ExportEntry {
    /// Checks that path, references and deriver are store paths in `store_dir`.
    pub fn validate(&self, store_dir: &str) -> Result<(), ExportError> {
        let check = |p: &str| {
            StorePath::parse(p, store_dir)
                .map(drop)
                .map_err(|source| ExportError::BadPath {
                    path: self.path.chars().take(256).collect(),
                    source,
                })
        };
        check(&self.path)?;
        for r in &self.references {
            check(r)?;
        }
        if let Some(d) = &self.deriver {
            check(d)?;
        }
        Ok(())
    }
}

/// Reads a whole export stream, validating every NAR (nothing is written).
pub fn read_export(r: &mut impl Read) -> Result<Vec<ExportEntry>, ExportError> {
    read_export_with(r, |nar| nar::parse(nar))
}

/// Reads an export stream, handing each NAR to `on_nar`, which must consume exactly
/// one NAR (e.g. [`nar::parse`] or [`nar::unpack`] into a temporary place) and return
/// its summary. The trailer naming the path follows the NAR, so it is only known after.
pub fn read_export_with(
    r: &mut impl Read,
    mut on_nar: impl FnMut(&mut dyn Read) -> Result<NarSummary, NarError>,
) -> Result<Vec<ExportEntry>, ExportError> {
    let mut out = Vec::new();
    loop {
        let index = out.len();
        let wire = |source| ExportError::Wire { index, source };
        match read_u64_named(r, "export marker").map_err(wire)? {
            0 => return Ok(out),
            1 => {}
            got => return Err(ExportError::BadMarker { index, got }),
        }
        let nar = on_nar(r).map_err(|source| ExportError::Nar { index, source })?;
        let magic = read_u64_named(r, "export magic").map_err(wire)?;
        if magic != EXPORT_MAGIC {
            return Err(ExportError::BadMagic { index, got: magic });
        }
        let path = read_string_named(r, MAX_PATH, "exported path").map_err(wire)?;
        let references =
            read_string_list_named(r, MAX_REFERENCES, MAX_PATH, "references").map_err(wire)?;
        let deriver = read_string_named(r, MAX_PATH, "deriver").map_err(wire)?;
        match read_u64_named(r, "signature flag").map_err(wire)? {
            0 => {}
            1 => {
                // Legacy signatures are not used by nsh; read and drop.
                read_string_named(r, MAX_SIGNATURE, "signature").map_err(wire)?;
            }
            got => return Err(ExportError::BadSignatureFlag { index, got }),
        }
        out.push(ExportEntry {
            path,
            references,
            deriver: (!deriver.is_empty()).then_some(deriver),
            nar,
        });
    }
}

fn write_trailer(
    w: &mut impl Write,
    path: &str,
    references: &[String],
    deriver: Option<&str>,
) -> io::Result<()> {
    write_u64(w, EXPORT_MAGIC)?;
    write_bytes(w, path.as_bytes())?;
    write_string_list(w, references)?;
    write_bytes(w, deriver.unwrap_or("").as_bytes())?;
    write_u64(w, 0)
}

/// Writes one entry whose NAR is already in memory. `references` should be sorted,
/// as Nix writes them.
pub fn write_export_entry(
    w: &mut impl Write,
    nar_bytes: &[u8],
    path: &str,
    references: &[String],
    deriver: Option<&str>,
) -> io::Result<()> {
    write_u64(w, 1)?;
    w.write_all(nar_bytes)?;
    write_trailer(w, path, references, deriver)
}

/// Writes one entry, dumping the NAR of `fs_path` (streamed) as the contents of
/// store path `path`.
pub fn write_export_entry_from_path(
    w: &mut impl Write,
    fs_path: &Path,
    path: &str,
    references: &[String],
    deriver: Option<&str>,
) -> io::Result<()> {
    write_u64(w, 1)?;
    nar::dump(fs_path, w)?;
    write_trailer(w, path, references, deriver)
}

/// Ends the stream.
pub fn write_export_end(w: &mut impl Write) -> io::Result<()> {
    write_u64(w, 0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    const A: &str = "/nix/store/g1nbm7bq8ivlsbdhcrnbn1yh9x8ngfwz-a";
    const B: &str = "/nix/store/a1nbm7bq8ivlsbdhcrnbn1yh9x8ngfwz-b";
    const D: &str = "/nix/store/b1nbm7bq8ivlsbdhcrnbn1yh9x8ngfwz-b.drv";

    fn nar_of(contents: &[u8]) -> Vec<u8> {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("f");
        std::fs::write(&f, contents).unwrap();
        let mut v = Vec::new();
        nar::dump(&f, &mut v).unwrap();
        v
    }

    #[test]
    fn roundtrip() {
        let na = nar_of(b"a");
        let nb = nar_of(b"bb");
        let mut s = Vec::new();
        write_export_entry(&mut s, &na, A, &[], None).unwrap();
        write_export_entry(&mut s, &nb, B, &[A.to_owned()], Some(D)).unwrap();
        write_export_end(&mut s).unwrap();
        let e = read_export(&mut s.as_slice()).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].path, A);
        assert_eq!(e[0].deriver, None);
        assert_eq!(e[1].references, [A]);
        assert_eq!(e[1].deriver.as_deref(), Some(D));
        assert_eq!(e[1].nar.sha256, <[u8; 32]>::from(Sha256::digest(&nb)));
        assert_eq!(e[1].nar.size, nb.len() as u64);
        for x in &e {
            x.validate("/nix/store").unwrap();
        }
        assert!(e[0].validate("/gnu/store").is_err());
    }

    #[test]
    fn rejects() {
        let na = nar_of(b"a");
        let mut good = Vec::new();
        write_export_entry(&mut good, &na, A, &[], None).unwrap();
        write_export_end(&mut good).unwrap();
        // Truncated anywhere (the final 0 included) must fail.
        for cut in 0..good.len() {
            assert!(read_export(&mut &good[..cut]).is_err(), "cut {cut}");
        }
        let magic_at = 8 + na.len();
        let mut bad = good.clone();
        bad[magic_at] = b'X';
        assert!(matches!(
            read_export(&mut bad.as_slice()),
            Err(ExportError::BadMagic { index: 0, .. })
        ));
        let mut bad = good.clone();
        bad[0] = 2;
        assert!(matches!(
            read_export(&mut bad.as_slice()),
            Err(ExportError::BadMarker { got: 2, .. })
        ));
        let mut bad = good.clone();
        bad[8 + 8] = b'X'; // first byte of "nix-archive-1"
        assert!(matches!(
            read_export(&mut bad.as_slice()),
            Err(ExportError::Nar { index: 0, .. })
        ));
    }
}
