//! SSH to the job's host: one ControlMaster per host, shared by every concurrent hook.
//!
//! Each accepted build is its own hook process, so 50 builds could mean 50 SSH handshakes
//! to the same node. Instead the first hook starts a master (detached: `ssh -f` leaves the
//! hook's process group, which Nix SIGKILLs when the build ends), records its control
//! socket, and later hooks resume it. The master exits after an idle minute.

use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use openssh::{ControlPersist, KnownHosts, Session, SessionBuilder};

/// How long an idle master stays up for the next hook.
const MASTER_IDLE: Duration = Duration::from_secs(60);

pub struct SshPool {
    dir: PathBuf,
}

impl SshPool {
    pub fn new(runtime_dir: &Path) -> Result<SshPool> {
        let dir = runtime_dir.join("ssh");
        crate::runtime_dir::ensure_private_dir(&dir)?;
        Ok(SshPool { dir })
    }

    /// A session to `host` through its shared master, starting the master if needed.
    pub async fn session(&self, host: &str) -> Result<Session> {
        // Host names come from the scheduler: nothing option-like or shell-special reaches ssh.
        crate::scheduler::check_host_name(host).map_err(|why| anyhow::anyhow!("host {why}"))?;
        let key = sanitize(host);
        let lock_path = self.dir.join(format!("{key}.lock"));
        // The lock serialises master start-up per host across hook processes.
        let lock_file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("cannot open {}", lock_path.display()))?;
        let lock = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
            // SAFETY: flock on an fd we own.
            if unsafe { libc::flock(lock_file.as_raw_fd(), libc::LOCK_EX) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(lock_file)
        })
        .await??;
        let result = self.session_locked(host, lock).await;
        result.with_context(|| format!("cannot open an SSH connection to '{host}'"))
    }

    async fn session_locked(&self, host: &str, mut lock: std::fs::File) -> Result<Session> {
        let mut recorded = String::new();
        lock.read_to_string(&mut recorded)?;
        let recorded = recorded.trim();
        if !recorded.is_empty() && Path::new(recorded).exists() {
            let session = Session::resume(PathBuf::from(recorded).into_boxed_path(), None);
            if session.check().await.is_ok() {
                return Ok(session);
            }
        }
        let mut builder = SessionBuilder::default();
        builder
            .known_hosts_check(KnownHosts::Strict)
            .control_directory(&self.dir)
            // Not openssh's own cleaning: it removes every other hook's master directory,
            // including ones whose master is still starting. See `remove_stale_masters`.
            .clean_history_control_directory(false)
            .control_persist(ControlPersist::IdleFor(
                std::num::NonZeroUsize::new(MASTER_IDLE.as_secs() as usize)
                    .unwrap_or(std::num::NonZeroUsize::MIN),
            ))
            .connect_timeout(Duration::from_secs(15))
            .server_alive_interval(Duration::from_secs(10));
        remove_stale_masters(&self.dir);
        let session = builder.connect(host).await.map_err(explain)?;
        let (ctl, log) = session.detach();
        lock.set_len(0)?;
        lock.rewind()?;
        writeln!(lock, "{}", ctl.display())?;
        Ok(Session::resume(ctl, log))
    }
}

/// openssh reports a failed master start with the master's log; keep its last lines, which
/// say why (`Permission denied (publickey)`, `Could not resolve hostname`).
fn explain(e: openssh::Error) -> anyhow::Error {
    anyhow::Error::from(e)
}

/// Removes master directories left by masters that exited (idle timeout) more than an
/// hour ago: no control socket inside and not touched since.
fn remove_stale_masters(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let is_master_dir = e
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(".ssh-connection"));
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(3600));
        if is_master_dir && old && !path.join("master").exists() {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

fn sanitize(host: &str) -> String {
    host.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
