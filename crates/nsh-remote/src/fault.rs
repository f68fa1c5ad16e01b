//! Test-only misbehaviour, compiled in only with the `fault-injection` feature (never in
//! the release agent). The mode comes from the file `<state-dir>/fault-injection` (the
//! state dir being the parent of the parent of `serve --dir`), read at each `FetchOutput`,
//! or from `NSH_FAULT`. The file holds one mode name; `none` or no file = behave.
//!
//! Modes (all but the last two act on what `FetchOutput` sends; the normal job path is unchanged):
//! - `corrupt-nar`: flips one byte of the real NAR in transit (after it was hashed, so
//!   `NarEnd` still comes), at NAR offset 200 (or the last byte of a shorter NAR).
//! - `nar-dotdot`, `nar-dot`, `nar-empty-name`, `nar-slash`, `nar-nul`: an entry named
//!   `..`, `.`, ``, `../../../../etc/nsh-fault-pwned`, `nsh-fault-pwned\0x`.
//! - `nar-unsorted`, `nar-duplicate`: entries out of order, or the same name twice.
//! - `nar-symlink-dir`: a symlink `x -> /etc`, then a directory `x` holding a file
//!   `nsh-fault-pwned` (writing through the link would land in /etc).
//! - `nar-oversize`: a valid NAR with a 1 MiB file, announced as 64 bytes.
//! - `wrong-fod`: a well-formed NAR of one regular file holding [`WRONG_FOD_CONTENTS`],
//!   with its true hash and size: right for no fixed output, so only the output hash
//!   check can tell (flat or recursive alike).
//! - `wrong-path`: `PathInfo` (and the real NAR) for a store path that is not the one
//!   asked for (`/nix/store/000…0-nsh-fault-pwned`).
//! - `bad-refs`: the real NAR with `/etc/passwd` and `nsh-fault-pwned` among the references.
//!
//! - `lease-ms=N` (read once, at start): a lease of N ms instead of `--lease-secs`, so
//!   a test can wait past the lease without waiting a minute (tests/e2e/t34).
//! - `stall-import-ms=N`: the worker sleeps N ms as each import starts (tests/e2e/t34).
//!
//! The hostile NARs are announced with their true hash and size (except `nar-oversize`),
//! so only the client's decoder and checks stand in the way.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};
use nsh_wire::agent_protocol::{AgentMsg, CHUNK_SIZE, PathInfo};
use nsh_wire::framing::write_bytes;
use sha2::{Digest, Sha256};

pub const FAULT_ENV: &str = "NSH_FAULT";
/// Name of the mode file in the state dir.
pub const FAULT_FILE: &str = "fault-injection";
/// Marker every hostile payload uses as a name, so a test can look for it anywhere.
pub const PWNED: &str = "nsh-fault-pwned";
/// What `wrong-fod` sends as the output's only file (tests/e2e/t29 knows its hash).
pub const WRONG_FOD_CONTENTS: &[u8] = b"not the fixed output: sent by a faulty agent\n";

static STATE_DIR: OnceLock<PathBuf> = OnceLock::new();

/// Remembers the state dir (parent of parent of the job's `--dir`).
pub fn set_job_dir(dir: &Path) {
    if let Some(state) = dir.parent().and_then(Path::parent) {
        let _ = STATE_DIR.set(state.to_path_buf());
    }
}

/// What `FetchOutput` should do wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    CorruptNar,
    /// Send this hostile NAR instead of the output's.
    Hostile(Hostile),
    WrongPath,
    BadRefs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hostile {
    DotDot,
    Dot,
    EmptyName,
    Slash,
    Nul,
    Unsorted,
    Duplicate,
    SymlinkDir,
    Oversize,
    WrongFod,
    /// A well-formed NAR in a zstd frame that asks for a window past the decoders' bound.
    ZstdWindow,
}

fn parse_mode(s: &str) -> Option<Fault> {
    Some(match s.trim() {
        "corrupt-nar" => Fault::CorruptNar,
        "nar-dotdot" => Fault::Hostile(Hostile::DotDot),
        "nar-dot" => Fault::Hostile(Hostile::Dot),
        "nar-empty-name" => Fault::Hostile(Hostile::EmptyName),
        "nar-slash" => Fault::Hostile(Hostile::Slash),
        "nar-nul" => Fault::Hostile(Hostile::Nul),
        "nar-unsorted" => Fault::Hostile(Hostile::Unsorted),
        "nar-duplicate" => Fault::Hostile(Hostile::Duplicate),
        "nar-symlink-dir" => Fault::Hostile(Hostile::SymlinkDir),
        "nar-oversize" => Fault::Hostile(Hostile::Oversize),
        "wrong-fod" => Fault::Hostile(Hostile::WrongFod),
        "nar-zstd-window" => Fault::Hostile(Hostile::ZstdWindow),
        "wrong-path" => Fault::WrongPath,
        "bad-refs" => Fault::BadRefs,
        _ => return None,
    })
}

/// The mode in force now: the state dir's file first, then `NSH_FAULT`.
pub fn current() -> Option<Fault> {
    let from_file = STATE_DIR
        .get()
        .and_then(|d| std::fs::read_to_string(d.join(FAULT_FILE)).ok());
    let text = from_file.or_else(|| std::env::var(FAULT_ENV).ok())?;
    let mode = text.split([',', '\n']).find_map(parse_mode);
    if let Some(m) = mode {
        crate::log::log!("fault injection: {m:?}");
    }
    mode
}

/// `KEY=N` from the mode file or `NSH_FAULT`.
fn number(key: &str) -> Option<u64> {
    let from_file = STATE_DIR
        .get()
        .and_then(|d| std::fs::read_to_string(d.join(FAULT_FILE)).ok());
    let text = from_file.or_else(|| std::env::var(FAULT_ENV).ok())?;
    text.split([',', '\n']).find_map(|w| {
        w.trim()
            .strip_prefix(key)?
            .strip_prefix('=')?
            .parse::<u64>()
            .ok()
    })
}

/// The lease to serve with: `lease-ms=N`, else `lease`.
pub fn lease(lease: std::time::Duration) -> std::time::Duration {
    match number("lease-ms") {
        Some(ms) => {
            crate::log::log!("fault injection: lease {ms} ms");
            std::time::Duration::from_millis(ms.max(100))
        }
        None => lease,
    }
}

/// `stall-import-ms=N`: the worker sleeps N ms when an import starts, as when the node's
/// daemon waits on a lock another job holds.
pub fn stall_import() {
    if let Some(ms) = number("stall-import-ms") {
        crate::log::log!("fault injection: stalling the import {ms} ms");
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

/// Flips one byte of the NAR stream once, at NAR offset 200.
pub struct NarFault {
    armed: bool,
}

const FLIP_AT: u64 = 200;

impl NarFault {
    pub fn new(fault: Option<Fault>) -> NarFault {
        NarFault {
            armed: fault == Some(Fault::CorruptNar),
        }
    }

    /// Called with each block at NAR offset `offset` after it was hashed and before it
    /// is compressed.
    pub fn apply(&mut self, offset: u64, data: &mut [u8]) {
        if !self.armed || offset > FLIP_AT {
            return;
        }
        if let Some(b) = data.get_mut((FLIP_AT - offset) as usize) {
            *b ^= 0x01;
            self.armed = false;
        }
    }

    /// Fails when the NAR ended before the byte to flip (the test needs a larger output).
    pub fn check_done(&self) -> Result<()> {
        if self.armed {
            bail!("fault injection: the NAR is not longer than {FLIP_AT} bytes; nothing corrupted");
        }
        Ok(())
    }
}

/// Rewrites what `Output` says, for the modes that send the real NAR.
pub fn rewrite_info(fault: Option<Fault>, mut info: PathInfo) -> PathInfo {
    match fault {
        Some(Fault::WrongPath) => {
            let store = info
                .path
                .rsplit_once('/')
                .map_or("/nix/store", |(dir, _)| dir);
            info.path = format!("{store}/{}-{PWNED}", "0".repeat(32));
        }
        Some(Fault::BadRefs) => {
            info.references.push("/etc/passwd".into());
            info.references.push(PWNED.into());
        }
        _ => {}
    }
    info
}

fn t(out: &mut Vec<u8>, toks: &[&[u8]]) {
    for tok in toks {
        // Writing to a Vec cannot fail.
        let _ = write_bytes(out, tok);
    }
}

fn entry(out: &mut Vec<u8>, name: &[u8], node: &[u8]) {
    t(out, &[b"entry", b"(", b"name", name, b"node"]);
    out.extend_from_slice(node);
    t(out, &[b")"]);
}

fn file(contents: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    t(
        &mut v,
        &[b"(", b"type", b"regular", b"contents", contents, b")"],
    );
    v
}

fn dir(entries: &[(&[u8], Vec<u8>)]) -> Vec<u8> {
    let mut v = Vec::new();
    t(&mut v, &[b"(", b"type", b"directory"]);
    for (name, node) in entries {
        entry(&mut v, name, node);
    }
    t(&mut v, &[b")"]);
    v
}

/// The hostile NAR of `kind`: a directory whose entries break one rule (or, for
/// `WrongFod`, a well-formed file with the wrong contents).
pub fn hostile_nar(kind: Hostile) -> Vec<u8> {
    let pwned = PWNED.as_bytes();
    let payload = || file(b"written by a hostile agent\n");
    let slash = format!("../../../../etc/{PWNED}");
    let nul = format!("{PWNED}\0x");
    let root = match kind {
        Hostile::DotDot => dir(&[(b"..", payload())]),
        Hostile::Dot => dir(&[(b".", payload())]),
        Hostile::EmptyName => dir(&[(b"", payload())]),
        Hostile::Slash => dir(&[(slash.as_bytes(), payload())]),
        Hostile::Nul => dir(&[(nul.as_bytes(), payload())]),
        Hostile::Unsorted => dir(&[(b"b", payload()), (b"a", payload())]),
        Hostile::Duplicate => dir(&[(pwned, payload()), (pwned, payload())]),
        Hostile::SymlinkDir => {
            let mut link = Vec::new();
            t(
                &mut link,
                &[b"(", b"type", b"symlink", b"target", b"/etc", b")"],
            );
            dir(&[(b"x", link), (b"x", dir(&[(pwned, payload())]))])
        }
        Hostile::Oversize => dir(&[(pwned, file(&vec![b'A'; 1 << 20]))]),
        Hostile::ZstdWindow => dir(&[(pwned, payload())]),
        Hostile::WrongFod => file(WRONG_FOD_CONTENTS),
    };
    let mut nar = Vec::new();
    t(&mut nar, &[nsh_wire::nar::NAR_MAGIC]);
    nar.extend_from_slice(&root);
    nar
}

/// Sends `Output` and a hostile NAR for `path` instead of the real one.
pub fn send_hostile(
    kind: Hostile,
    mut info: PathInfo,
    send: &mut dyn FnMut(AgentMsg) -> Result<()>,
) -> Result<()> {
    let nar = hostile_nar(kind);
    info.nar_hash = hex::encode(Sha256::digest(&nar));
    info.nar_size = if kind == Hostile::Oversize {
        64
    } else {
        nar.len() as u64
    };
    crate::log::log!(
        "fault injection: sending a hostile NAR ({kind:?}, {} bytes) for {}",
        nar.len(),
        info.path
    );
    send(AgentMsg::Output(info))?;
    let z = if kind == Hostile::ZstdWindow {
        huge_window_frame(&nar)?
    } else {
        zstd::stream::encode_all(&nar[..], 3).context("compressing the hostile NAR")?
    };
    for c in z.chunks(CHUNK_SIZE) {
        send(AgentMsg::NarChunk(c.to_vec()))?;
    }
    send(AgentMsg::NarEnd)
}

/// `data` in a streamed zstd frame (no content size) that declares a window twice the size
/// the decoders accept.
fn huge_window_frame(data: &[u8]) -> Result<Vec<u8>> {
    use std::io::Write;
    let mut e = zstd::stream::write::Encoder::new(Vec::new(), 1)?;
    e.include_contentsize(false)?;
    e.window_log(nsh_wire::compression::WINDOW_LOG_MAX + 1)?;
    e.write_all(data)?;
    Ok(e.finish()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_hostile_nar_is_refused() {
        for kind in [
            Hostile::DotDot,
            Hostile::Dot,
            Hostile::EmptyName,
            Hostile::Slash,
            Hostile::Nul,
            Hostile::Unsorted,
            Hostile::Duplicate,
            Hostile::SymlinkDir,
        ] {
            let nar = hostile_nar(kind);
            assert!(
                nsh_wire::nar::parse(&mut &nar[..]).is_err(),
                "{kind:?} parsed"
            );
        }
        // Well-formed, only larger than announced.
        let nar = hostile_nar(Hostile::Oversize);
        assert!(nsh_wire::nar::parse(&mut &nar[..]).is_ok());
        let limits = nsh_wire::nar::UnpackLimits {
            max_total_size: 64,
            ..Default::default()
        };
        assert!(nsh_wire::nar::parse_with_limits(&mut &nar[..], &limits).is_err());
        // Well-formed, a regular file: only an output hash check refuses it.
        let nar = hostile_nar(Hostile::WrongFod);
        let got = nsh_wire::nar::parse_checked(
            &mut &nar[..],
            &nsh_wire::nar::UnpackLimits::default(),
            nsh_wire::nar::ContentHash::FlatFile(nsh_wire::hash::HashAlgo::Sha256),
        )
        .unwrap();
        assert_eq!(
            got.root,
            nsh_wire::nar::RootKind::Regular { executable: false }
        );
        assert_eq!(
            got.content.unwrap().bytes(),
            Sha256::digest(WRONG_FOD_CONTENTS).as_slice()
        );
    }

    #[test]
    fn modes_parse() {
        assert_eq!(parse_mode("corrupt-nar\n"), Some(Fault::CorruptNar));
        assert_eq!(
            parse_mode(" nar-symlink-dir "),
            Some(Fault::Hostile(Hostile::SymlinkDir))
        );
        assert_eq!(
            parse_mode("wrong-fod"),
            Some(Fault::Hostile(Hostile::WrongFod))
        );
        assert_eq!(parse_mode("none"), None);
    }

    #[test]
    fn corrupts_once_at_200() {
        let mut f = NarFault::new(Some(Fault::CorruptNar));
        let mut a = vec![0u8; 150];
        f.apply(0, &mut a);
        assert!(a.iter().all(|b| *b == 0));
        let mut b = vec![0u8; 150];
        f.apply(150, &mut b);
        assert_eq!(b[50], 1);
        let mut c = vec![0u8; 150];
        f.apply(300, &mut c);
        assert!(c.iter().all(|b| *b == 0));
        assert!(f.check_done().is_ok());
        let mut short = NarFault::new(Some(Fault::CorruptNar));
        short.apply(0, &mut [0u8; 100]);
        assert!(short.check_done().is_err());
    }
}
