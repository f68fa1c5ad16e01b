//! NAR (Nix ARchive) encoding and a validating, streaming decoder.
//!
//! ```plain
//! nar   = str "nix-archive-1", node
//! node  = str "(", str "type", body, str ")"
//! body  = str "regular", [str "executable", str ""], str "contents", str data
//!       | str "symlink", str "target", str target
//!       | str "directory", entry*
//! entry = str "entry", str "(", str "name", str name, str "node", node, str ")"
//! ```
//! Every `str` is Nix framing (u64 LE length, bytes, zero padding to 8; see
//! [`crate::framing`]). Mirrors Nix `src/libutil/archive.cc` (`dump`, `parseDump`).
//!
//! The decoder sits on the trust boundary: the hook runs as root and
//! writes what a cluster node sends into the store. It refuses bad magic, unknown
//! tokens, names that are empty, `.`, `..` or contain `/` or NUL, entries that are
//! not strictly ascending by raw bytes, non-zero padding, an `executable` marker with
//! a value, empty or NUL-containing symlink targets, and anything beyond
//! [`UnpackLimits`]. [`unpack`] creates every node relative to an already opened
//! directory fd with `O_EXCL|O_NOFOLLOW` semantics (`openat`/`mkdirat`/`symlinkat`),
//! so a symlink it wrote earlier is never followed, and it removes its partial output
//! on error. Trailing bytes after the closing `)` are left in the reader: the decoder
//! reads exactly the NAR's bytes, so wrap an unbuffered source in a `BufReader` you
//! keep using afterwards (many small reads otherwise).
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::fs;
use std::io::{self, Read};
use std::path::Path;

use rustix::fs::{Mode, OFlags};
use sha2::{Digest, Sha256};

use crate::framing::WireError;
use crate::hash::{Hash, HashAlgo, Hasher};

#[path = "nar_dump.rs"]
mod dump;
#[path = "nar_parse.rs"]
mod parse;
#[path = "nar_fs.rs"]
mod sink;

pub use dump::dump;
use parse::Parser;
use sink::{FsSink, NullSink, Root, remove_tree};

pub const NAR_MAGIC: &[u8] = b"nix-archive-1";
const TOK_OPEN: &[u8] = b"(";
const TOK_CLOSE: &[u8] = b")";
const TOK_TYPE: &[u8] = b"type";
const TOK_REGULAR: &[u8] = b"regular";
const TOK_EXECUTABLE: &[u8] = b"executable";
const TOK_CONTENTS: &[u8] = b"contents";
const TOK_SYMLINK: &[u8] = b"symlink";
const TOK_TARGET: &[u8] = b"target";
const TOK_DIRECTORY: &[u8] = b"directory";
const TOK_ENTRY: &[u8] = b"entry";
const TOK_NAME: &[u8] = b"name";
const TOK_NODE: &[u8] = b"node";

/// Longest fixed token ("nix-archive-1"); anything longer cannot be one.
const MAX_TOKEN: u64 = 16;
/// Longest entry name: well above NAME_MAX, the filesystem refuses more anyway.
pub const MAX_NAME: u64 = 4096;
/// Longest symlink target: PATH_MAX.
pub const MAX_TARGET: u64 = 4096;

/// Caller-chosen bounds on what a NAR may contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnpackLimits {
    /// Largest single file.
    pub max_file_size: u64,
    /// Largest NAR, in bytes of the stream.
    pub max_total_size: u64,
    /// Most nodes (files, symlinks, directories).
    pub max_entries: u64,
    /// Deepest directory nesting (the root is depth 0).
    pub max_depth: usize,
}

impl Default for UnpackLimits {
    fn default() -> Self {
        UnpackLimits {
            max_file_size: 1 << 40,
            max_total_size: 1 << 40,
            max_entries: 100_000_000,
            max_depth: 256,
        }
    }
}

/// sha256 and length of a NAR, as Nix records them (narHash, narSize).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NarSummary {
    pub sha256: [u8; 32],
    pub size: u64,
}

impl NarSummary {
    /// Lower-case hex of the sha256.
    pub fn sha256_hex(&self) -> String {
        hex::encode(self.sha256)
    }

    /// `sha256:<hex>`, the form `nix-store --register-validity --hash-given` takes.
    pub fn nix_hash(&self) -> String {
        format!("sha256:{}", self.sha256_hex())
    }
}

/// Errors of the NAR decoder. `path` is the entry inside the NAR ("/" = the root).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NarError {
    #[error("not a NAR: bad magic")]
    BadMagic,
    #[error("malformed NAR at '{path}'")]
    Wire {
        path: String,
        #[source]
        source: WireError,
    },
    #[error("malformed NAR at '{path}': expected {expected}, got '{got}'")]
    UnexpectedToken {
        path: String,
        expected: &'static str,
        got: String,
    },
    #[error("NAR entry '{path}' has a forbidden name: {why}")]
    BadName { path: String, why: &'static str },
    #[error("NAR directory is not sorted: '{path}' does not come after '{prev}'")]
    NotSorted { path: String, prev: String },
    #[error("NAR entry '{path}' has a non-empty executable marker")]
    ExecutableValue { path: String },
    #[error("NAR symlink '{path}' has a bad target: {why}")]
    BadSymlinkTarget { path: String, why: &'static str },
    #[error("NAR file '{path}' is {size} bytes, more than the limit of {max}")]
    FileTooLarge { path: String, size: u64, max: u64 },
    #[error("NAR is larger than the limit of {max} bytes (at '{path}')")]
    TotalTooLarge { path: String, max: u64 },
    #[error("NAR has more than {max} entries (at '{path}')")]
    TooManyEntries { path: String, max: u64 },
    #[error("NAR nests deeper than {max} directories (at '{path}')")]
    TooDeep { path: String, max: usize },
    #[error("unpack destination '{dest}' already exists")]
    DestExists { dest: String },
    #[error("unpack destination '{dest}' has no parent directory or file name")]
    BadDest { dest: String },
    #[error("{op} '{path}'")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },
}

/// What else to hash while decoding, besides the NAR's sha256 (fixed-output checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentHash {
    None,
    /// The whole NAR, with this algorithm (`outputHashMode = recursive`).
    Nar(HashAlgo),
    /// The contents of the root node if it is a regular file (`outputHashMode = flat`).
    FlatFile(HashAlgo),
}

/// What the root node of a NAR is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootKind {
    Regular { executable: bool },
    Symlink,
    Directory,
}

/// The result of [`unpack_checked`] / [`parse_checked`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub nar: NarSummary,
    pub root: RootKind,
    /// The hash [`ContentHash`] asked for; `None` for `ContentHash::None`, and for
    /// `FlatFile` when the root is not a regular file.
    pub content: Option<Hash>,
}

/// Wraps a reader, hashing (sha256) and counting every byte read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
    /// A second hash of the same bytes, for a recursive fixed output of another algorithm.
    extra: Option<Hasher>,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
            extra: None,
        }
    }

    /// Bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.count
    }

    /// Hash and count of everything read so far.
    pub fn summary(&self) -> NarSummary {
        NarSummary {
            sha256: self.hasher.clone().finalize().into(),
            size: self.count,
        }
    }

    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let got = buf.get(..n).unwrap_or_default();
        self.hasher.update(got);
        if let Some(h) = &mut self.extra {
            h.update(got);
        }
        self.count += got.len() as u64;
        Ok(n)
    }
}

/// Checks a NAR without writing anything; returns its hash and size.
pub fn parse<R: Read + ?Sized>(r: &mut R) -> Result<NarSummary, NarError> {
    parse_with_limits(r, &UnpackLimits::default())
}

/// [`parse`] with caller-chosen limits.
pub fn parse_with_limits<R: Read + ?Sized>(
    r: &mut R,
    limits: &UnpackLimits,
) -> Result<NarSummary, NarError> {
    Ok(parse_checked(r, limits, ContentHash::None)?.nar)
}

/// [`parse_with_limits`], also hashing the content as `content` asks.
pub fn parse_checked<R: Read + ?Sized>(
    r: &mut R,
    limits: &UnpackLimits,
    content: ContentHash,
) -> Result<Checked, NarError> {
    let mut p = Parser::new(r, NullSink, limits);
    p.want(content);
    p.run()?;
    Ok(p.finish())
}

/// Unpacks a NAR at `dest` (which must not exist; its parent must), verifying it
/// while writing. On error, whatever was written at `dest` is removed.
pub fn unpack<R: Read + ?Sized>(r: &mut R, dest: &Path) -> Result<NarSummary, NarError> {
    unpack_with_limits(r, dest, &UnpackLimits::default())
}

/// [`unpack`] with caller-chosen limits.
pub fn unpack_with_limits<R: Read + ?Sized>(
    r: &mut R,
    dest: &Path,
    limits: &UnpackLimits,
) -> Result<NarSummary, NarError> {
    Ok(unpack_checked(r, dest, limits, ContentHash::None)?.nar)
}

/// [`unpack_with_limits`], also hashing the content as `content` asks (while writing:
/// the NAR is read once).
pub fn unpack_checked<R: Read + ?Sized>(
    r: &mut R,
    dest: &Path,
    limits: &UnpackLimits,
    content: ContentHash,
) -> Result<Checked, NarError> {
    let bad_dest = || NarError::BadDest {
        dest: dest.display().to_string(),
    };
    let name = dest.file_name().ok_or_else(bad_dest)?;
    let parent = match dest.parent() {
        Some(p) if p.as_os_str().is_empty() => Path::new("."),
        Some(p) => p,
        None => return Err(bad_dest()),
    };
    if fs::symlink_metadata(dest).is_ok() {
        return Err(NarError::DestExists {
            dest: dest.display().to_string(),
        });
    }
    let parent_fd = rustix::fs::openat(
        rustix::fs::CWD,
        parent,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| NarError::Io {
        op: "opening the parent of",
        path: dest.display().to_string(),
        source: e.into(),
    })?;
    let sink = FsSink {
        root: Root {
            parent: parent_fd,
            name,
        },
        created_root: false,
    };
    let mut p = Parser::new(r, sink, limits);
    p.want(content);
    match p.run() {
        Ok(()) => Ok(p.finish()),
        Err(e) => {
            if p.sink.created_root {
                remove_tree(dest);
            }
            Err(e)
        }
    }
}

#[cfg(test)]
#[path = "nar_tests.rs"]
mod tests;
