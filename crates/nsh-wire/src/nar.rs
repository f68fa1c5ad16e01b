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
//! The decoder sits on the trust boundary (design §5): the hook runs as root and
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

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use rustix::fs::{Mode, OFlags};
use sha2::{Digest, Sha256};

use crate::framing::{WireError, read_body, read_padding, read_u64_named, write_bytes, write_u64};

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

/// Wraps a reader, hashing (sha256) and counting every byte read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
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
        self.count += got.len() as u64;
        Ok(n)
    }
}

/// Serialises the tree at `path` exactly like `nix-store --dump`.
/// Symlinks are stored, not followed; file contents are streamed.
pub fn dump(path: &Path, w: &mut impl Write) -> io::Result<()> {
    write_bytes(w, NAR_MAGIC)?;
    dump_node(path, w)
}

fn dump_node(path: &Path, w: &mut impl Write) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    let ft = meta.file_type();
    write_bytes(w, TOK_OPEN)?;
    write_bytes(w, TOK_TYPE)?;
    if ft.is_file() {
        write_bytes(w, TOK_REGULAR)?;
        if meta.permissions().mode() & 0o100 != 0 {
            write_bytes(w, TOK_EXECUTABLE)?;
            write_bytes(w, b"")?;
        }
        write_bytes(w, TOK_CONTENTS)?;
        let len = meta.len();
        write_u64(w, len)?;
        let file = File::open(path)?;
        let copied = io::copy(&mut file.take(len), w)?;
        if copied != len {
            return Err(io::Error::other(format!(
                "'{}' shrank while being dumped",
                path.display()
            )));
        }
        crate::framing::write_padding(w, len)?;
    } else if ft.is_symlink() {
        write_bytes(w, TOK_SYMLINK)?;
        write_bytes(w, TOK_TARGET)?;
        write_bytes(w, fs::read_link(path)?.as_os_str().as_bytes())?;
    } else if ft.is_dir() {
        write_bytes(w, TOK_DIRECTORY)?;
        let mut names = fs::read_dir(path)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<Vec<_>>>()?;
        // Raw byte order, like Nix's std::map<std::string, …>.
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in names {
            write_bytes(w, TOK_ENTRY)?;
            write_bytes(w, TOK_OPEN)?;
            write_bytes(w, TOK_NAME)?;
            write_bytes(w, name.as_bytes())?;
            write_bytes(w, TOK_NODE)?;
            dump_node(&path.join(&name), w)?;
            write_bytes(w, TOK_CLOSE)?;
        }
    } else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("'{}' is not a file, directory or symlink", path.display()),
        ));
    }
    write_bytes(w, TOK_CLOSE)
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
    let mut p = Parser::new(r, NullSink, limits);
    p.run()?;
    Ok(p.r.summary())
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
    match p.run() {
        Ok(()) => Ok(p.r.summary()),
        Err(e) => {
            if p.sink.created_root {
                remove_tree(dest);
            }
            Err(e)
        }
    }
}

/// Best-effort removal of a partially unpacked tree (directories may be 0555).
fn remove_tree(path: &Path) {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return;
    };
    if meta.is_dir() {
        let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o700));
        if let Ok(rd) = fs::read_dir(path) {
            for e in rd.flatten() {
                remove_tree(&e.path());
            }
        }
        let _ = fs::remove_dir(path);
    } else {
        let _ = fs::remove_file(path);
    }
}

/// Receives the nodes of a NAR as they are parsed. `parent == None` is the root.
trait Sink {
    type Dir;
    /// Must read `contents` to its end (the parser drains what is left).
    fn file(
        &mut self,
        parent: Option<&Self::Dir>,
        name: &[u8],
        executable: bool,
        contents: &mut dyn Read,
    ) -> io::Result<()>;
    fn symlink(&mut self, parent: Option<&Self::Dir>, name: &[u8], target: &[u8])
    -> io::Result<()>;
    fn dir_enter(&mut self, parent: Option<&Self::Dir>, name: &[u8]) -> io::Result<Self::Dir>;
    fn dir_leave(&mut self, dir: Self::Dir) -> io::Result<()>;
}

struct NullSink;

impl Sink for NullSink {
    type Dir = ();
    fn file(&mut self, _: Option<&()>, _: &[u8], _: bool, c: &mut dyn Read) -> io::Result<()> {
        io::copy(c, &mut io::sink()).map(drop)
    }
    fn symlink(&mut self, _: Option<&()>, _: &[u8], _: &[u8]) -> io::Result<()> {
        Ok(())
    }
    fn dir_enter(&mut self, _: Option<&()>, _: &[u8]) -> io::Result<()> {
        Ok(())
    }
    fn dir_leave(&mut self, _: ()) -> io::Result<()> {
        Ok(())
    }
}

/// Writes nodes with *at() calls relative to directory fds it created itself.
struct FsSink<'a> {
    root: Root<'a>,
    /// Set once the root node exists, so cleanup never removes what was there before.
    created_root: bool,
}

/// Where the root node goes: the (trusted) parent of `dest`, and dest's file name.
struct Root<'a> {
    parent: OwnedFd,
    name: &'a OsStr,
}

impl Root<'_> {
    fn at<'s>(&'s self, parent: Option<&'s OwnedFd>, name: &'s [u8]) -> (BorrowedFd<'s>, &'s [u8]) {
        match parent {
            Some(fd) => (fd.as_fd(), name),
            None => (self.parent.as_fd(), self.name.as_bytes()),
        }
    }
}

impl Sink for FsSink<'_> {
    type Dir = OwnedFd;

    fn file(
        &mut self,
        parent: Option<&OwnedFd>,
        name: &[u8],
        executable: bool,
        contents: &mut dyn Read,
    ) -> io::Result<()> {
        let (dir, name) = self.root.at(parent, name);
        // O_EXCL|O_NOFOLLOW: never reuse or follow anything already there.
        let fd = rustix::fs::openat(
            dir,
            name,
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )?;
        self.created_root |= parent.is_none();
        let mut file = File::from(fd);
        io::copy(contents, &mut file)?;
        let mode = if executable { 0o555 } else { 0o444 };
        rustix::fs::fchmod(&file, Mode::from_raw_mode(mode))?;
        Ok(())
    }

    fn symlink(&mut self, parent: Option<&OwnedFd>, name: &[u8], target: &[u8]) -> io::Result<()> {
        let (dir, name) = self.root.at(parent, name);
        rustix::fs::symlinkat(target, dir, name)?;
        self.created_root |= parent.is_none();
        Ok(())
    }

    fn dir_enter(&mut self, parent: Option<&OwnedFd>, name: &[u8]) -> io::Result<OwnedFd> {
        let (dir, name) = self.root.at(parent, name);
        rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o700))?;
        self.created_root |= parent.is_none();
        // NOFOLLOW + DIRECTORY: fails if something swapped the new dir for a symlink.
        let fd = rustix::fs::openat(
            dir,
            name,
            OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        // Independent of umask: owner needs write access while filling it.
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o700))?;
        Ok(fd)
    }

    fn dir_leave(&mut self, dir: OwnedFd) -> io::Result<()> {
        rustix::fs::fchmod(&dir, Mode::from_raw_mode(0o555))?;
        Ok(())
    }
}

struct Parser<'l, R: Read, S: Sink> {
    r: HashingReader<R>,
    sink: S,
    limits: &'l UnpackLimits,
    entries: u64,
    /// Path of the node being parsed, for error messages.
    path: Vec<u8>,
}

/// Untrusted bytes for error messages: lossy UTF-8 with control characters (NUL, ESC, …)
/// escaped so they cannot reach a terminal, cut to 256 bytes.
fn show(b: &[u8]) -> String {
    let cut = b.get(..256).unwrap_or(b);
    let mut s = String::new();
    for c in String::from_utf8_lossy(cut).chars() {
        if c.is_control() {
            s.extend(c.escape_default());
        } else {
            s.push(c);
        }
    }
    if cut.len() < b.len() {
        s.push('…');
    }
    s
}

impl<'l, R: Read, S: Sink> Parser<'l, R, S> {
    fn new(r: R, sink: S, limits: &'l UnpackLimits) -> Self {
        Parser {
            r: HashingReader::new(r),
            sink,
            limits,
            entries: 0,
            path: Vec::new(),
        }
    }

    /// The current entry as an absolute path inside the NAR ("/" is the root).
    fn here(&self) -> String {
        format!("/{}", show(&self.path))
    }

    fn wire(&self, source: WireError) -> NarError {
        NarError::Wire {
            path: self.here(),
            source,
        }
    }

    fn io(&self, op: &'static str, source: io::Error) -> NarError {
        if source.kind() == io::ErrorKind::UnexpectedEof {
            return self.wire(WireError::UnexpectedEof {
                what: "file contents",
            });
        }
        NarError::Io {
            op,
            path: self.here(),
            source,
        }
    }

    fn read_u64(&mut self, what: &'static str) -> Result<u64, NarError> {
        read_u64_named(&mut self.r, what).map_err(|e| self.wire(e))
    }

    fn string(&mut self, max: u64, what: &'static str) -> Result<Vec<u8>, NarError> {
        let len = self.read_u64(what)?;
        read_body(&mut self.r, len, max, what).map_err(|e| self.wire(e))
    }

    /// Reads one fixed token; a length that no token has is reported without
    /// reading (or allocating) the body.
    fn token(&mut self, expected: &'static str) -> Result<Vec<u8>, NarError> {
        let len = self.read_u64("token")?;
        if len > MAX_TOKEN {
            return Err(NarError::UnexpectedToken {
                path: self.here(),
                expected,
                got: format!("<{len}-byte string>"),
            });
        }
        read_body(&mut self.r, len, MAX_TOKEN, "token").map_err(|e| self.wire(e))
    }

    fn expect(&mut self, tok: &'static [u8], expected: &'static str) -> Result<(), NarError> {
        let got = self.token(expected)?;
        if got != tok {
            return Err(NarError::UnexpectedToken {
                path: self.here(),
                expected,
                got: show(&got),
            });
        }
        Ok(())
    }

    fn run(&mut self) -> Result<(), NarError> {
        let magic = self.token("NAR magic").map_err(|_| NarError::BadMagic)?;
        if magic != NAR_MAGIC {
            return Err(NarError::BadMagic);
        }
        self.count_entry()?;
        self.node(None, b"", 0)
    }

    fn count_entry(&mut self) -> Result<(), NarError> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(NarError::TooManyEntries {
                path: self.here(),
                max: self.limits.max_entries,
            });
        }
        Ok(())
    }

    fn node(&mut self, parent: Option<&S::Dir>, name: &[u8], depth: usize) -> Result<(), NarError> {
        self.expect(TOK_OPEN, "'('")?;
        self.expect(TOK_TYPE, "'type'")?;
        let ty = self.token("a node type")?;
        match ty.as_slice() {
            TOK_REGULAR => self.regular(parent, name)?,
            TOK_SYMLINK => {
                self.expect(TOK_TARGET, "'target'")?;
                let target = self.string(MAX_TARGET, "symlink target")?;
                let why = if target.is_empty() {
                    Some("empty")
                } else if target.contains(&0) {
                    Some("contains NUL")
                } else {
                    None
                };
                if let Some(why) = why {
                    return Err(NarError::BadSymlinkTarget {
                        path: self.here(),
                        why,
                    });
                }
                self.sink
                    .symlink(parent, name, &target)
                    .map_err(|e| self.io("creating symlink", e))?;
            }
            // The entry loop consumes the directory's closing ")" itself.
            TOK_DIRECTORY => return self.directory(parent, name, depth),
            other => {
                return Err(NarError::UnexpectedToken {
                    path: self.here(),
                    expected: "'regular', 'symlink' or 'directory'",
                    got: show(other),
                });
            }
        }
        self.expect(TOK_CLOSE, "')'")
    }

    fn regular(&mut self, parent: Option<&S::Dir>, name: &[u8]) -> Result<(), NarError> {
        let mut tok = self.token("'executable' or 'contents'")?;
        let executable = tok == TOK_EXECUTABLE;
        if executable {
            let value = self.token("an empty string")?;
            if !value.is_empty() {
                return Err(NarError::ExecutableValue { path: self.here() });
            }
            tok = self.token("'contents'")?;
        }
        if tok != TOK_CONTENTS {
            return Err(NarError::UnexpectedToken {
                path: self.here(),
                expected: "'contents'",
                got: show(&tok),
            });
        }
        let size = self.read_u64("file size")?;
        if size > self.limits.max_file_size {
            return Err(NarError::FileTooLarge {
                path: self.here(),
                size,
                max: self.limits.max_file_size,
            });
        }
        if self.r.bytes_read().saturating_add(size) > self.limits.max_total_size {
            return Err(NarError::TotalTooLarge {
                path: self.here(),
                max: self.limits.max_total_size,
            });
        }
        let mut body = (&mut self.r).take(size);
        let res = self.sink.file(parent, name, executable, &mut body);
        // Drain what the sink left (e.g. after a write error) so EOF is detected.
        let left = res
            .as_ref()
            .ok()
            .map(|()| io::copy(&mut body, &mut io::sink()));
        let remaining = body.limit();
        match (res, left) {
            (Err(e), _) | (Ok(()), Some(Err(e))) => return Err(self.io("writing file", e)),
            _ => {}
        }
        if remaining != 0 {
            return Err(self.wire(WireError::UnexpectedEof {
                what: "file contents",
            }));
        }
        read_padding(&mut self.r, size, "file contents").map_err(|e| self.wire(e))
    }

    fn directory(
        &mut self,
        parent: Option<&S::Dir>,
        name: &[u8],
        depth: usize,
    ) -> Result<(), NarError> {
        if depth > self.limits.max_depth {
            return Err(NarError::TooDeep {
                path: self.here(),
                max: self.limits.max_depth,
            });
        }
        let dir = self
            .sink
            .dir_enter(parent, name)
            .map_err(|e| self.io("creating directory", e))?;
        let mut prev: Option<Vec<u8>> = None;
        loop {
            let tok = self.token("'entry' or ')'")?;
            if tok == TOK_CLOSE {
                break;
            }
            if tok != TOK_ENTRY {
                return Err(NarError::UnexpectedToken {
                    path: self.here(),
                    expected: "'entry' or ')'",
                    got: show(&tok),
                });
            }
            self.expect(TOK_OPEN, "'('")?;
            self.expect(TOK_NAME, "'name'")?;
            let entry = self.string(MAX_NAME, "entry name")?;
            let saved = self.path.len();
            if !self.path.is_empty() {
                self.path.push(b'/');
            }
            self.path.extend_from_slice(&entry);
            check_name(&entry).map_err(|why| NarError::BadName {
                path: self.here(),
                why,
            })?;
            if let Some(p) = &prev
                && entry.as_slice() <= p.as_slice()
            {
                return Err(NarError::NotSorted {
                    path: self.here(),
                    prev: show(p),
                });
            }
            self.count_entry()?;
            self.expect(TOK_NODE, "'node'")?;
            self.node(Some(&dir), &entry, depth + 1)?;
            self.expect(TOK_CLOSE, "')'")?;
            self.path.truncate(saved);
            prev = Some(entry);
        }
        self.sink
            .dir_leave(dir)
            .map_err(|e| self.io("finishing directory", e))
    }
}

/// Nix's rule (`archive.cc`): not empty, not `.` or `..`, no `/` or NUL.
fn check_name(name: &[u8]) -> Result<(), &'static str> {
    if name.is_empty() {
        Err("empty")
    } else if name == b"." || name == b".." {
        Err("'.' or '..'")
    } else if name.contains(&b'/') {
        Err("contains '/'")
    } else if name.contains(&0) {
        Err("contains NUL")
    } else {
        Ok(())
    }
}

#[cfg(test)]
#[path = "nar_tests.rs"]
mod tests;
