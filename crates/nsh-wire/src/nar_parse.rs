//! The NAR decoder proper: a recursive-descent parser over Nix framing that hands each
//! node to a [`Sink`] and enforces the rules and limits listed in [`super`].
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::{self, Read};

use super::sink::Sink;
use super::{
    Checked, ContentHash, HashingReader, MAX_NAME, MAX_TARGET, MAX_TOKEN, NAR_MAGIC, NarError,
    RootKind, TOK_CLOSE, TOK_CONTENTS, TOK_DIRECTORY, TOK_ENTRY, TOK_EXECUTABLE, TOK_NAME,
    TOK_NODE, TOK_OPEN, TOK_REGULAR, TOK_SYMLINK, TOK_TARGET, TOK_TYPE, UnpackLimits,
};
use crate::framing::{WireError, read_body, read_padding, read_u64_named};
use crate::hash::{Hash, HashAlgo, Hasher};

pub(super) struct Parser<'l, R: Read, S: Sink> {
    pub(super) r: HashingReader<R>,
    pub(super) sink: S,
    limits: &'l UnpackLimits,
    entries: u64,
    /// Path of the node being parsed, for error messages.
    path: Vec<u8>,
    content: ContentHash,
    /// The root file's contents hash (`ContentHash::FlatFile`), once it was read.
    flat: Option<Hash>,
    root: Option<RootKind>,
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
    pub(super) fn new(r: R, sink: S, limits: &'l UnpackLimits) -> Self {
        Parser {
            r: HashingReader::new(r),
            sink,
            limits,
            entries: 0,
            path: Vec::new(),
            content: ContentHash::None,
            flat: None,
            root: None,
        }
    }

    pub(super) fn want(&mut self, content: ContentHash) {
        self.content = content;
        // The NAR's sha256 is computed anyway.
        if let ContentHash::Nar(algo) = content
            && algo != HashAlgo::Sha256
        {
            self.r.extra = Some(Hasher::new(algo));
        }
    }

    /// After a successful [`Parser::run`].
    pub(super) fn finish(&mut self) -> Checked {
        let nar = self.r.summary();
        let content = match self.content {
            ContentHash::None => None,
            ContentHash::Nar(HashAlgo::Sha256) => Hash::from_bytes(HashAlgo::Sha256, &nar.sha256),
            ContentHash::Nar(_) => self.r.extra.clone().map(Hasher::finish),
            ContentHash::FlatFile(_) => self.flat.clone(),
        };
        Checked {
            nar,
            // run() succeeded, so the root was seen; a directory is the neutral answer.
            root: self.root.unwrap_or(RootKind::Directory),
            content,
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

    pub(super) fn run(&mut self) -> Result<(), NarError> {
        // An I/O error is the reader's to report (it is not the data's fault).
        let magic = self.token("NAR magic").map_err(|e| match e {
            NarError::Wire {
                source: WireError::Io { .. },
                ..
            } => e,
            _ => NarError::BadMagic,
        })?;
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
                if parent.is_none() {
                    self.root = Some(RootKind::Symlink);
                }
            }
            // The entry loop consumes the directory's closing ")" itself.
            TOK_DIRECTORY => {
                if parent.is_none() {
                    self.root = Some(RootKind::Directory);
                }
                return self.directory(parent, name, depth);
            }
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
        let flat_algo = match self.content {
            ContentHash::FlatFile(algo) if parent.is_none() => Some(algo),
            _ => None,
        };
        let mut body = HashingTake {
            inner: (&mut self.r).take(size),
            hasher: flat_algo.map(Hasher::new),
        };
        let res = self.sink.file(parent, name, executable, &mut body);
        // Drain what the sink left (e.g. after a write error) so EOF is detected.
        let left = res
            .as_ref()
            .ok()
            .map(|()| io::copy(&mut body, &mut io::sink()));
        let remaining = body.inner.limit();
        if parent.is_none() {
            self.root = Some(RootKind::Regular { executable });
            self.flat = body.hasher.map(Hasher::finish);
        }
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

/// A file's contents as the parser reads them, hashed on the way if asked.
struct HashingTake<R> {
    inner: io::Take<R>,
    hasher: Option<Hasher>,
}

impl<R: Read> Read for HashingTake<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(h) = &mut self.hasher {
            h.update(buf.get(..n).unwrap_or_default());
        }
        Ok(n)
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
