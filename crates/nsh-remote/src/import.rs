//! `ImportPath`/`ImportChunk`* `ImportEnd`: the NARs of the missing inputs, one zstd stream,
//! decompressed as they arrive and handed path by path to `nix-daemon --stdio` with
//! `AddToStoreNar`, which restores each NAR while it streams in and checks it against the
//! announced hash and size (`nix-store --import` would first read each whole NAR into
//! memory). `nix-daemon --stdio` serves the configured `remote-store` itself, or forwards
//! to the node's daemon when that store is the daemon's, with the job user's rights.

use std::collections::VecDeque;
use std::io::{self, BufReader, BufWriter, Write};
use std::process::{Child, ChildStdin, ChildStdout};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::{self, JoinHandle};

use anyhow::{Context, Result, bail};
use nsh_wire::agent_protocol::PathInfo;
use nsh_wire::compression;
use nsh_wire::worker_protocol::{
    self, AddToStoreNar, Stderr, write_add_to_store_nar, write_frame, write_frame_end,
};

use crate::daemon::{self, Daemon};
use crate::log::log;
use crate::nix::{NixStore, check_path_arg, tail_text};
use crate::procs::{ChildGuard, Children, signal_group};

/// The daemon's verdict on one `AddToStoreNar`: `Err` holds its message.
type OpResult = std::result::Result<(), String>;

pub struct Import {
    decoder: Option<zstd::stream::write::Decoder<'static, NarSplitter>>,
    child: Child,
    guard: ChildGuard,
    stderr: Option<JoinHandle<Vec<u8>>>,
    /// First error; later data is dropped and `finish` reports it.
    failed: Option<String>,
    compressed: u64,
}

/// Cuts the decompressed stream into the announced NARs and sends each as one
/// `AddToStoreNar` with a framed body.
struct NarSplitter {
    to_daemon: BufWriter<ChildStdin>,
    results: Receiver<OpResult>,
    reader: Option<JoinHandle<()>>,
    pending: VecDeque<PathInfo>,
    /// The path being sent and how many of its NAR bytes are still to come.
    current: Option<(String, u64)>,
    added: u64,
}

/// Reads the daemon's messages for the whole connection, so that its log lines never
/// block it while we stream, and passes each operation's verdict on.
fn read_verdicts(
    mut from: BufReader<ChildStdout>,
    version: u64,
    tx: Sender<OpResult>,
) -> JoinHandle<()> {
    thread::spawn(move || {
        loop {
            let verdict = match worker_protocol::read_stderr(&mut from, version) {
                Ok(Stderr::Next(line)) => {
                    log!("nix-daemon: {}", line.trim_end());
                    continue;
                }
                Ok(Stderr::Progress) => continue,
                Ok(Stderr::Last) => Ok(()),
                Ok(Stderr::Error(msg)) => Err(msg),
                Ok(Stderr::Unexpected(tag)) => Err(format!("unexpected message {tag:#x}")),
                Err(e) => {
                    let _ = tx.send(Err(format!("connection lost: {e}")));
                    return;
                }
            };
            if tx.send(verdict).is_err() {
                return;
            }
        }
    })
}

fn check_info(info: &PathInfo) -> Result<()> {
    check_path_arg(&info.path)?;
    for r in &info.references {
        check_path_arg(r)?;
    }
    if let Some(d) = &info.deriver {
        check_path_arg(d)?;
    }
    if info.nar_hash.len() != 64 || !info.nar_hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("refusing {}: its NAR hash is not sha256 hex", info.path);
    }
    if info.nar_size == 0 {
        bail!("refusing {}: an empty NAR", info.path);
    }
    Ok(())
}

impl NarSplitter {
    fn begin_next(&mut self) -> io::Result<()> {
        let info = self.pending.pop_front().ok_or_else(|| {
            io::Error::other("the import stream holds more data than the announced paths")
        })?;
        write_add_to_store_nar(
            &mut self.to_daemon,
            &AddToStoreNar {
                path: &info.path,
                deriver: info.deriver.as_deref(),
                nar_hash_hex: &info.nar_hash,
                references: &info.references,
                nar_size: info.nar_size,
            },
        )?;
        self.current = Some((info.path, info.nar_size));
        Ok(())
    }

    fn end_current(&mut self, path: String) -> io::Result<()> {
        write_frame_end(&mut self.to_daemon)?;
        self.to_daemon.flush()?;
        match self.results.recv() {
            Ok(Ok(())) => {
                self.added += 1;
                Ok(())
            }
            Ok(Err(msg)) => Err(io::Error::other(format!(
                "the Nix daemon refused {path}: {msg}"
            ))),
            Err(_) => Err(io::Error::other(format!(
                "the Nix daemon went away while adding {path}"
            ))),
        }
    }
}

impl Write for NarSplitter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut rest = buf;
        while !rest.is_empty() {
            if self.current.is_none() {
                self.begin_next()?;
            }
            let Some((path, remaining)) = self.current.as_mut() else {
                continue;
            };
            let n = usize::try_from(*remaining)
                .unwrap_or(usize::MAX)
                .min(rest.len());
            let (now, later) = rest.split_at(n);
            write_frame(&mut self.to_daemon, now)?;
            *remaining -= n as u64;
            rest = later;
            if *remaining == 0 {
                let path = std::mem::take(path);
                self.current = None;
                self.end_current(path)?;
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.to_daemon.flush()
    }
}

impl Import {
    /// Starts an import on `early` (the connection opened when the agent started) if
    /// there is one, else on a new connection.
    pub fn start(
        nix: &NixStore,
        children: &Arc<Children>,
        early: Option<Result<Daemon>>,
    ) -> Result<Import> {
        let Daemon {
            child,
            to: to_daemon,
            from,
            hs,
            stderr,
        } = match early {
            Some(Ok(d)) => d,
            _ => daemon::open(nix)?,
        };
        let guard = ChildGuard::new(children, child.id() as i32);
        let (tx, results) = channel();
        let reader = read_verdicts(from, hs.version, tx);
        let splitter = NarSplitter {
            to_daemon,
            results,
            reader: Some(reader),
            pending: VecDeque::new(),
            current: None,
            added: 0,
        };
        let decoder = compression::write_decoder(splitter).context("creating zstd decoder")?;
        log!(
            "import started (nix-daemon --stdio, pid {}, protocol {}, Nix {})",
            child.id(),
            worker_protocol::version_string(hs.version),
            hs.nix_version.as_deref().unwrap_or("?")
        );
        Ok(Import {
            decoder: Some(decoder),
            child,
            guard,
            stderr: Some(stderr),
            failed: None,
            compressed: 0,
        })
    }

    /// The next path whose NAR the stream carries.
    pub fn announce(&mut self, info: PathInfo) -> Result<()> {
        check_info(&info)?;
        if let Some(d) = self.decoder.as_mut() {
            d.get_mut().pending.push_back(info);
        }
        Ok(())
    }

    pub fn chunk(&mut self, data: &[u8]) {
        self.compressed += data.len() as u64;
        if self.failed.is_some() {
            return;
        }
        if let Some(d) = self.decoder.as_mut()
            && let Err(e) = d.write_all(data)
        {
            self.failed = Some(format!("{e}"));
            // Close its stdin so that the daemon ends.
            self.decoder = None;
        }
    }

    /// Ends the stream and waits for the daemon; returns the number of paths added.
    pub fn finish(mut self) -> Result<u64> {
        let mut added = 0;
        if let Some(mut d) = self.decoder.take()
            && self.failed.is_none()
        {
            let state = d.flush().and_then(|()| {
                let s = d.get_mut();
                match (&s.current, s.pending.front()) {
                    (Some((path, left)), _) => Err(io::Error::other(format!(
                        "the import stream ended {left} bytes before the end of {path}"
                    ))),
                    (None, Some(info)) => Err(io::Error::other(format!(
                        "the import stream ended before {}",
                        info.path
                    ))),
                    (None, None) => Ok(()),
                }
            });
            match state {
                Ok(()) => {
                    let mut s = d.into_inner();
                    added = s.added;
                    // EOF ends the daemon's connection loop.
                    drop(s.to_daemon);
                    if let Some(r) = s.reader.take() {
                        let _ = r.join();
                    }
                }
                Err(e) => self.failed = Some(e.to_string()),
            }
        }
        let status = self
            .child
            .wait()
            .context("waiting for nix-daemon --stdio")?;
        let stderr = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        log!(
            "import ended: {status}, {added} paths from {} compressed bytes",
            self.compressed
        );
        if let Some(f) = &self.failed {
            bail!("{f}");
        }
        if !status.success() {
            bail!(
                "nix-daemon --stdio failed ({status}): {}",
                tail_text(&stderr, 4000)
            );
        }
        Ok(added)
    }
}

impl Drop for Import {
    fn drop(&mut self) {
        // An import abandoned by a disconnect: stop the daemon rather than leave it waiting.
        self.decoder = None;
        if let Ok(None) = self.child.try_wait() {
            log!("abandoning unfinished import");
            signal_group(self.guard.pgid(), libc::SIGTERM);
            let _ = self.child.wait();
        }
    }
}
