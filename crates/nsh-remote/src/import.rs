//! `ImportChunk`* `ImportEnd`: one zstd stream of `nix-store --export` data, decompressed
//! as it arrives straight into `nix-store --import`.

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use anyhow::{Context, Result, bail};

use crate::log::log;
use crate::nix::{NixStore, tail_text};
use crate::procs::{ChildGuard, Children, signal_group};

/// Largest zstd window accepted (libzstd's default limit, set explicitly).
pub const WINDOW_LOG_MAX: u32 = 27;

pub struct Import {
    decoder: Option<zstd::stream::write::Decoder<'static, ChildStdin>>,
    child: Child,
    guard: ChildGuard,
    stdout: Option<JoinHandle<Vec<u8>>>,
    stderr: Option<JoinHandle<Vec<u8>>>,
    /// First write error; later chunks are dropped and `finish` reports it.
    failed: Option<String>,
    compressed: u64,
}

fn slurp(mut r: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        // A read error just ends the capture; the exit status tells what happened.
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

impl Import {
    pub fn start(nix: &NixStore, children: &Arc<Children>) -> Result<Import> {
        let mut child = nix
            .command()
            .arg("--import")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("spawning {} --import", nix.program().display()))?;
        let guard = ChildGuard::new(children, child.id() as i32);
        let stdin = child.stdin.take().context("import stdin")?;
        let stdout = slurp(child.stdout.take().context("import stdout")?);
        let stderr = slurp(child.stderr.take().context("import stderr")?);
        let mut decoder =
            zstd::stream::write::Decoder::new(stdin).context("creating zstd decoder")?;
        decoder
            .window_log_max(WINDOW_LOG_MAX)
            .context("setting zstd window limit")?;
        log!("import started (nix-store --import, pid {})", child.id());
        Ok(Import {
            decoder: Some(decoder),
            child,
            guard,
            stdout: Some(stdout),
            stderr: Some(stderr),
            failed: None,
            compressed: 0,
        })
    }

    pub fn chunk(&mut self, data: &[u8]) {
        self.compressed += data.len() as u64;
        if self.failed.is_some() {
            return;
        }
        if let Some(d) = self.decoder.as_mut()
            && let Err(e) = d.write_all(data)
        {
            self.failed = Some(format!("feeding nix-store --import: {e}"));
            // Close its stdin so it stops waiting for the rest.
            self.decoder = None;
        }
    }

    /// Ends the stream and waits for `nix-store --import`; returns the number of paths it
    /// imported.
    pub fn finish(mut self) -> Result<u64> {
        if let Some(d) = self.decoder.take()
            && self.failed.is_none()
        {
            match d.finish() {
                Ok(stdin) => drop(stdin),
                Err(e) => self.failed = Some(format!("import stream: {e}")),
            }
        }
        let status = self
            .child
            .wait()
            .context("waiting for nix-store --import")?;
        let stdout = self
            .stdout
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        let stderr = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        let paths = String::from_utf8_lossy(&stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .count() as u64;
        log!(
            "import ended: {status}, {paths} paths from {} compressed bytes",
            self.compressed
        );
        if !status.success() || self.failed.is_some() {
            bail!(
                "nix-store --import failed ({status}){}: {}",
                self.failed
                    .as_deref()
                    .map(|f| format!(", {f}"))
                    .unwrap_or_default(),
                tail_text(&stderr, 4000)
            );
        }
        Ok(paths)
    }
}

impl Drop for Import {
    fn drop(&mut self) {
        // An import abandoned by a disconnect: stop it rather than leave it half-read.
        self.decoder = None;
        if let Ok(None) = self.child.try_wait() {
            log!("abandoning unfinished import");
            signal_group(self.guard.pgid(), libc::SIGTERM);
            let _ = self.child.wait();
        }
    }
}
