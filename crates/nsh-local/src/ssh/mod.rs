//! SSH to the job's host: a few ControlMasters per host, each carrying at most
//! [`slots::BUILDS_PER_MASTER`] builds, shared by every concurrent hook.
//!
//! Each accepted build is its own hook process, so 50 builds could mean 50 SSH handshakes
//! to the same node; one shared master instead runs into sshd's MaxSessions (10 sessions
//! per connection by default) at about 10 builds. So a build first takes a *slot*
//! (`slots.rs`, an flock'd file) on the lowest master with one free, and keeps it for its
//! life: its channel, reconnects and the commands after a failure all go through that
//! master (`master.rs`), which is started when its first slot is taken and exits after an
//! idle minute.
//!
//! Layout under `<runtime dir>/ssh`: `.ssh-connection*/` (openssh's control dirs, all
//! hosts), and per host `<host>/start.lock`, `<host>/m<K>.ctl`, `<host>/m<K>.s<S>.lock`.

mod master;
mod slots;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use openssh::Session;

pub use slots::BUILDS_PER_MASTER;

/// How many masters of one host may refuse a session before nsh gives up: a refusal with
/// at most [`BUILDS_PER_MASTER`] builds on a master means the site's MaxSessions is below
/// sshd's default, and further masters would be refused alike.
const MAX_REFUSALS: usize = 3;

pub struct SshPool {
    dir: PathBuf,
}

impl SshPool {
    pub fn new(runtime_dir: &Path) -> Result<SshPool> {
        let dir = runtime_dir.join("ssh");
        crate::runtime_dir::ensure_private_dir(&dir)?;
        Ok(SshPool { dir })
    }

    /// Takes a slot for one build on `host`; it is held until the [`Slot`] is dropped (or
    /// the process dies).
    pub async fn slot(&self, host: &str) -> Result<Slot> {
        // Host names come from the scheduler: nothing option-like or shell-special reaches ssh.
        crate::scheduler::check_host_name(host).map_err(|why| anyhow::anyhow!("host {why}"))?;
        let host_dir = self.dir.join(sanitize(host));
        let dir = host_dir.clone();
        let held = tokio::task::spawn_blocking(move || {
            crate::runtime_dir::ensure_private_dir(&dir)?;
            slots::take(&dir, &[])
        })
        .await??;
        Ok(Slot {
            control_dir: self.dir.clone(),
            host_dir,
            host: host.to_owned(),
            held,
            refused: Vec::new(),
        })
    }
}

/// One build's share of the SSH connections to its host.
pub struct Slot {
    control_dir: PathBuf,
    host_dir: PathBuf,
    host: String,
    held: slots::Held,
    /// Masters that refused a session to this build.
    refused: Vec<usize>,
}

impl Slot {
    /// A session through this slot's master, starting it (again) if it is not up.
    pub async fn session(&self) -> Result<Session> {
        master::session(
            &self.control_dir,
            &self.host_dir,
            &self.host,
            self.held.master,
        )
        .await
        .with_context(|| format!("cannot open an SSH connection to '{}'", self.host))
    }

    /// Call after a command or channel through this slot failed with `failure`. If the
    /// master is up but refused the session (sshd's MaxSessions reached), moves to a slot
    /// on another master and returns true: the caller retries there. False if the failure
    /// was something else; an error once [`MAX_REFUSALS`] masters refused.
    pub async fn move_if_refused(&mut self, failure: &anyhow::Error) -> Result<bool> {
        // A refused session makes ssh exit 255, which openssh reports as
        // `RemoteProcessTerminated` (nsh's own commands never exit 255). The agent channel
        // shows only an early end of its stream: ask with a trivial command then, which
        // misses a refusal caused by a short command that has ended meanwhile.
        let ssh_failed = failure.chain().any(|e| {
            matches!(
                e.downcast_ref::<openssh::Error>(),
                Some(openssh::Error::RemoteProcessTerminated)
            )
        });
        let refused = if ssh_failed {
            self.master_up().await
        } else {
            self.refuses_sessions().await
        };
        if !refused {
            return Ok(false);
        }
        self.refused.push(self.held.master);
        if self.refused.len() >= MAX_REFUSALS {
            bail!(
                "sshd on {} refused new sessions on {} SSH connections carrying at most {} \
                 builds each: its MaxSessions is below nsh's need of 3 sessions per build \
                 (sshd's default is 10); set MaxSessions 10 or more in the node's \
                 sshd_config, or ask the site to",
                self.host,
                self.refused.len(),
                BUILDS_PER_MASTER
            );
        }
        let dir = self.host_dir.clone();
        let avoid = self.refused.clone();
        // Assigning drops the old slot, so a later build may use it (and may be refused
        // there too, then move on as this one did).
        self.held = tokio::task::spawn_blocking(move || slots::take(&dir, &avoid)).await??;
        tracing::info!(host = %self.host, master = self.held.master, slot = self.held.slot, "moved to another master");
        Ok(true)
    }

    /// Whether this slot's master is up and a trivial command through it fails at the SSH
    /// level (openssh reports ssh's exit 255 as `RemoteProcessTerminated`).
    async fn refuses_sessions(&self) -> bool {
        let Some(session) = master::resume(&self.record()).await else {
            return false;
        };
        // A link that is down hangs the probe instead: not a refusal.
        let mut probe = session.command("true");
        match tokio::time::timeout(std::time::Duration::from_secs(10), probe.status()).await {
            Ok(Err(openssh::Error::RemoteProcessTerminated)) => session.check().await.is_ok(),
            _ => false,
        }
    }

    /// Whether this slot's master answers `ssh -O check`.
    async fn master_up(&self) -> bool {
        master::resume(&self.record()).await.is_some()
    }

    fn record(&self) -> PathBuf {
        self.host_dir.join(format!("m{}.ctl", self.held.master))
    }

    /// The master this slot is on (for messages and tests).
    pub fn master(&self) -> usize {
        self.held.master
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
