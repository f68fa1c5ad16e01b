//! The node's Nix daemon, spoken to over `nix-daemon --stdio` (the configured store itself,
//! or a forward to the node's daemon with the job user's rights).
//!
//! Both connections the agent needs are opened, handshake included, as soon as it has
//! found its Nix (while `nix-store --version` runs), so they are ready before nsh has its
//! SSH session up: one answers the queries for the
//! agent's whole life ([`Queries`]: which inputs are missing, an output's metadata), the
//! other is kept for the first import (`import.rs`, which ends its connection). Each of
//! these used to be a fresh process on the build's path, ~30–50 ms apiece on the testbed.
//! A query connection that fails is dropped, and the caller falls back to `nix-store`.

use std::io::{BufReader, BufWriter, Read};
use std::process::{Child, ChildStdin, ChildStdout, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

use anyhow::{Context, Result, bail};
use nsh_wire::worker_protocol::{self, Handshake, client_handshake};
use nsh_wire::worker_query::{self, DaemonPathInfo};

use crate::log::log;
use crate::nix::{NixStore, check_path_arg, tail_text};
use crate::procs::{ChildGuard, Children};

/// One `nix-daemon --stdio` after the handshake.
pub struct Daemon {
    pub child: Child,
    pub to: BufWriter<ChildStdin>,
    pub from: BufReader<ChildStdout>,
    pub hs: Handshake,
    /// Its stderr, collected until it exits.
    pub stderr: JoinHandle<Vec<u8>>,
}

pub fn slurp(mut r: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        // A read error just ends the capture; the exit status tells what happened.
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

/// Starts `nix-daemon --stdio` and shakes hands.
pub fn open(nix: &NixStore) -> Result<Daemon> {
    let mut cmd = nix.daemon_command()?;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawning {:?}", cmd.get_program()))?;
    let stderr = slurp(child.stderr.take().context("nix-daemon stderr")?);
    let mut to =
        BufWriter::with_capacity(256 * 1024, child.stdin.take().context("nix-daemon stdin")?);
    let mut from =
        BufReader::with_capacity(64 * 1024, child.stdout.take().context("nix-daemon stdout")?);
    match client_handshake(&mut from, &mut to, &mut |line| {
        log!("nix-daemon: {}", line.trim_end())
    }) {
        Ok(hs) => Ok(Daemon {
            child,
            to,
            from,
            hs,
            stderr,
        }),
        Err(e) => {
            drop(to);
            let _ = child.kill();
            let _ = child.wait();
            let err = tail_text(&stderr.join().unwrap_or_default(), 2000);
            let program = cmd.get_program().to_string_lossy().into_owned();
            if err.is_empty() {
                bail!("{program} --stdio: {e}")
            }
            // What it printed says more than the protocol error its exit caused.
            bail!("{program} --stdio failed: {err}")
        }
    }
}

/// For `self-check`: can the agent add paths here? Says which protocol and Nix answered.
pub fn check(nix: &NixStore) -> Result<String> {
    let Daemon {
        mut child, to, hs, ..
    } = open(nix)?;
    drop(to);
    let _ = child.wait();
    Ok(format!(
        "nix-daemon --stdio answers (worker protocol {}, Nix {})",
        worker_protocol::version_string(hs.version),
        hs.nix_version.as_deref().unwrap_or("?")
    ))
}

/// A daemon connection being opened on its own thread; taken once.
pub struct Early {
    opening: Mutex<Option<JoinHandle<Result<Daemon>>>>,
}

impl Early {
    pub fn spawn(nix: &NixStore) -> Early {
        let nix = nix.clone();
        Early {
            opening: Mutex::new(Some(thread::spawn(move || open(&nix)))),
        }
    }

    /// The connection (waiting for its handshake if need be), or `None` once taken.
    pub fn take(&self) -> Option<Result<Daemon>> {
        let handle = self
            .opening
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()?;
        Some(
            handle
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("opening nix-daemon --stdio panicked"))),
        )
    }
}

/// The connection that answers queries; `None` inside once it failed or was closed.
pub struct Queries {
    early: Early,
    conn: Mutex<Option<(Daemon, ChildGuard)>>,
    children: Arc<Children>,
}

impl Queries {
    pub fn start(nix: &NixStore, children: &Arc<Children>) -> Queries {
        Queries {
            early: Early::spawn(nix),
            conn: Mutex::new(None),
            children: Arc::clone(children),
        }
    }

    /// Runs `op` on the connection; `None` (and the connection dropped) if there is none
    /// or it failed, so the caller asks `nix-store` instead.
    fn with<T>(
        &self,
        what: &str,
        op: impl FnOnce(&mut Daemon) -> Result<T, worker_protocol::WorkerError>,
    ) -> Option<T> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if conn.is_none() {
            match self.early.take()? {
                Ok(d) => {
                    let guard = ChildGuard::new(&self.children, d.child.id() as i32);
                    *conn = Some((d, guard));
                }
                Err(e) => {
                    log!("no query connection to the Nix daemon (using nix-store): {e:#}");
                    return None;
                }
            }
        }
        let (daemon, _) = conn.as_mut()?;
        match op(daemon) {
            Ok(v) => Some(v),
            Err(e) => {
                log!("{what} through nix-daemon --stdio failed (using nix-store): {e}");
                if let Some((d, _guard)) = conn.take() {
                    end(d);
                }
                None
            }
        }
    }

    /// The store paths among `paths` that are not valid; `None`: ask `nix-store`.
    pub fn missing(&self, paths: &[String]) -> Option<Vec<String>> {
        if paths
            .iter()
            .any(|p| check_path_arg(p).is_err() || p.len() as u64 > worker_query::MAX_PATH)
            || paths.len() as u64 > worker_query::MAX_PATHS
        {
            return None;
        }
        let valid = self.with("QueryValidPaths", |d| {
            worker_query::write_query_valid_paths(&mut d.to, d.hs.version, paths)?;
            worker_query::read_valid_paths(&mut d.from, d.hs.version, &mut |l| {
                log!("nix-daemon: {}", l.trim_end())
            })
        })?;
        let valid: std::collections::HashSet<String> = valid.into_iter().collect();
        Some(
            paths
                .iter()
                .filter(|p| !valid.contains(*p))
                .cloned()
                .collect(),
        )
    }

    /// `path`'s metadata; `None`: ask `nix-store`.
    pub fn path_info(&self, path: &str) -> Option<DaemonPathInfo> {
        check_path_arg(path).ok()?;
        self.with("QueryPathInfo", |d| {
            worker_query::write_query_path_info(&mut d.to, path)?;
            worker_query::read_path_info(&mut d.from, d.hs.version, &mut |l| {
                log!("nix-daemon: {}", l.trim_end())
            })
        })?
    }

    /// Streams `path`'s NAR to `sink` as it arrives; its size. `None`: nothing went to
    /// `sink` and the connection is gone or failed (use `nix-store --dump`), or it failed
    /// midway (the caller sees that `sink` got bytes). A failure drops the connection: an
    /// unframed NAR cut short leaves it out of step.
    pub fn nar(
        &self,
        path: &str,
        sink: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Option<Result<u64>> {
        check_path_arg(path).ok()?;
        let mut sink_error = None;
        let size = self.with("NarFromPath", |d| {
            worker_query::write_nar_from_path(&mut d.to, path)?;
            worker_query::await_last(&mut d.from, d.hs.version, &mut |l| {
                log!("nix-daemon: {}", l.trim_end())
            })?;
            let mut tee = Tee {
                inner: &mut d.from,
                sink,
                error: &mut sink_error,
            };
            nsh_wire::nar::parse(&mut tee)
                .map(|summary| summary.size)
                .map_err(|e| worker_protocol::WorkerError::Io(std::io::Error::other(e)))
        });
        match (size, sink_error) {
            (_, Some(e)) => Some(Err(e)),
            (Some(size), None) => Some(Ok(size)),
            (None, None) => None,
        }
    }

    /// Ends the connection (at goodbye): its end of input ends the daemon at once, so the
    /// shutdown that follows has nothing to wait for.
    pub fn close(&self) {
        let taken = self.conn.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some((d, _guard)) = taken {
            end(d);
        }
    }
}

/// Ends a connection: the end of its input ends the daemon (not waited for: nothing of
/// the job depends on it, and the agent exits right after a goodbye).
fn end(d: Daemon) {
    drop(d.to);
}

/// Passes what the NAR parser reads on to a sink; the sink's first error stops the read.
struct Tee<'a, R> {
    inner: &'a mut R,
    sink: &'a mut dyn FnMut(&[u8]) -> Result<()>,
    error: &'a mut Option<anyhow::Error>,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Err(e) = (self.sink)(buf.get(..n).unwrap_or_default()) {
            let message = format!("{e:#}");
            *self.error = Some(e);
            return Err(std::io::Error::other(message));
        }
        Ok(n)
    }
}
