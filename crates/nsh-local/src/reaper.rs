//! The reaper: a small detached process that cancels the job if the hook dies first.
//!
//! Nix before 2.35 SIGKILLs the hook's whole process group on Ctrl-C, with no warning
//! (upstream Nix issue #14760), so cancellation cannot live in the hook. At submit time the
//! hook starts `nsh __reap <job>` in a new session, holding nothing of Nix's (no fd 1, 2 or
//! 4), with a pipe as its stdin. The hook writes `done` before it exits normally; if the
//! pipe closes without it, the hook was killed and the reaper cancels the job.
//!
//! slurmrestd may be down just then (restarting, overloaded): the reaper keeps trying to
//! connect and cancel for [`PATIENCE`], pausing at most [`MAX_PAUSE`] between attempts, so
//! the job goes within seconds of slurmrestd answering again. Bounded because a reaper
//! that waits forever on an API that is gone for good piles up; a job that starts after it
//! gave up ends on its own: no hook renews its agent's lease (nsh-wire agent_protocol.rs `LEASE`).
//!
//! A rejected token (expired while the build ran) is retried only for [`AUTH_PATIENCE`],
//! each attempt re-reading the token (a site timer may have renewed it): the agent's
//! lease ends the job within that time without any cancel.
//!
//! With `max-queued-jobs`, the reaper also holds the hook's queue slot (queue_slots.rs):
//! it inherits the locked file as fd 3 and exits only once the job has left the queue
//! (or after [`GONE_PATIENCE`]), so the cap counts jobs, not hooks.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::time::Instant;

use crate::queue_slots::Slot;
use nsh_wire::agent_protocol::LEASE;

use crate::scheduler::{JobId, JobState, Scheduler};

/// How long the reaper tries to reach slurmrestd and cancel: outlasts a slurmrestd restart
/// or upgrade with room to spare.
pub const PATIENCE: Duration = Duration::from_secs(30 * 60);
/// How long the reaper keeps trying once the scheduler rejected its token (each attempt
/// re-reads the token, so a renewal that lands meanwhile still cancels at once): by then
/// the agent's lease, not renewed by the dead hook, has ended the job anyway.
pub const AUTH_PATIENCE: Duration = Duration::from_secs(LEASE.as_secs() + 30);
/// Longest pause between two attempts.
pub const MAX_PAUSE: Duration = Duration::from_secs(2);
/// How long a slot is held for a job that is still listed after its end (completing:
/// KillWait, epilog) before the reaper lets the slot go anyway.
pub const GONE_PATIENCE: Duration = Duration::from_secs(120);
/// A job still pending or running this long after its cancel is stuck (a PBS node daemon
/// that does not answer, say): it is cancelled once more, which the PBS backend forces.
pub const STUCK_AFTER: Duration = Duration::from_secs(60);
/// The fd the reaper finds the inherited queue slot on.
const SLOT_FD: i32 = 3;

/// The hook's end of the pipe; dropping it without [`ReaperHandle::release`] means
/// "cancel".
pub struct ReaperHandle {
    pipe: Option<std::process::ChildStdin>,
}

impl ReaperHandle {
    /// The job no longer needs cancelling (it finished, or the hook cancelled it itself).
    pub fn release(mut self) {
        if let Some(mut p) = self.pipe.take() {
            let _ = std::io::Write::write_all(&mut p, b"done\n");
        }
    }
}

/// [`spawn`], or `None` after warning the user that the job may outlive an interrupted
/// build (the build itself goes on: the hook still cancels the job on every path it sees).
pub fn spawn_or_warn(
    ui: &crate::nix_log::Ui,
    job: &JobId,
    slot: Option<&Slot>,
) -> Option<ReaperHandle> {
    spawn(job, slot)
        .map_err(|e| {
            ui.warn(&format!(
                "nsh: {e:#}; job {job} may outlive an interrupted build"
            ))
        })
        .ok()
}

/// Starts the reaper for `job`; it keeps `slot` (if any) until the job is gone.
pub fn spawn(job: &JobId, slot: Option<&Slot>) -> Result<ReaperHandle> {
    let exe = std::env::current_exe().context("cannot find nsh's own executable")?;
    let mut cmd = Command::new(exe);
    cmd.arg("__reap")
        .arg(&job.0)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if slot.is_some() {
        cmd.arg("--holds-slot");
    }
    let slot_fd = slot.map(|s| s.file().as_raw_fd());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // Out of the hook's process group and session: Nix kills those.
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            let mut keep = 3;
            if let Some(fd) = slot_fd {
                // dup2 onto itself would keep close-on-exec: clear it instead.
                let ok = if fd == SLOT_FD {
                    libc::fcntl(fd, libc::F_SETFD, 0) != -1
                } else {
                    libc::dup2(fd, SLOT_FD) != -1
                };
                if !ok {
                    return Err(std::io::Error::last_os_error());
                }
                keep = SLOT_FD as u32 + 1;
            }
            // Hold none of Nix's fds (its EOF on fd 1/2 means "build finished").
            libc::syscall(libc::SYS_close_range, keep, u32::MAX, 0u32);
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("cannot start the reaper")?;
    let pipe = child.stdin.take();
    // The reaper outlives us; nobody waits for it (init reaps it once we are gone).
    std::mem::forget(child);
    Ok(ReaperHandle { pipe })
}

/// Body of `nsh __reap <job> [--holds-slot]`: wait for the verdict on `verdict` (the pipe),
/// cancel if there is none; with a slot, wait until the job has left the queue.
pub fn run<S: Scheduler>(
    rt: &tokio::runtime::Runtime,
    mut verdict: impl Read,
    job: &str,
    holds_slot: bool,
    connect: impl AsyncFn() -> Result<S>,
) -> Result<()> {
    let mut said = Vec::new();
    let _ = verdict.by_ref().take(64).read_to_end(&mut said);
    let cancel = !said.starts_with(b"done");
    if !cancel && !holds_slot {
        return Ok(());
    }
    let job = JobId(job.to_string());
    rt.block_on(async {
        let deadline = Instant::now() + PATIENCE;
        let mut pause = Pause::default();
        let sched = loop {
            match connect().await {
                Ok(s) => break s,
                Err(e) => pause.wait_or(deadline, e).await?,
            }
        };
        if cancel {
            let mut auth_deadline = None;
            while let Err(e) = sched.cancel(&job).await {
                let until = if sched.rejects_credentials(&e) {
                    *auth_deadline.get_or_insert_with(|| {
                        tracing::warn!(%job, "cancel refused, the token was rejected: {e:#}; \
                            the agent's lease ends the job");
                        Instant::now() + AUTH_PATIENCE
                    })
                } else {
                    deadline
                };
                pause.wait_or(until.min(deadline), e).await?;
            }
            recancel_if_stuck(&sched, &job).await;
        }
        if holds_slot {
            wait_until_gone(&sched, &job).await;
        }
        Ok(())
    })
}

/// Watches a cancelled job for [`STUCK_AFTER`]: one that has not ended by then is
/// cancelled again (forced where the scheduler has that).
async fn recancel_if_stuck<S: Scheduler>(sched: &S, job: &JobId) {
    let deadline = Instant::now() + STUCK_AFTER;
    let mut pause = Pause::default();
    loop {
        if let Ok(st) = sched.status(job).await
            && !matches!(st.state, JobState::Pending | JobState::Running)
        {
            return;
        }
        if pause.wait_or(deadline, ()).await.is_err() {
            if let Err(e) = sched.cancel(job).await {
                tracing::warn!(%job, "cancelling again: {e:#}");
            }
            return;
        }
    }
}

/// Polls until `job` has left the queue, for at most [`GONE_PATIENCE`]; the caller then
/// exits and the slot is free.
async fn wait_until_gone<S: Scheduler>(sched: &S, job: &JobId) {
    let deadline = Instant::now() + GONE_PATIENCE;
    let mut pause = Pause::default();
    loop {
        let listed = match sched.status(job).await {
            Ok(st) => st.in_queue,
            Err(_) => true,
        };
        if !listed || pause.wait_or(deadline, ()).await.is_err() {
            return;
        }
    }
}

/// Growing pauses between attempts, 250 ms up to [`MAX_PAUSE`].
#[derive(Default)]
struct Pause(u32);

impl Pause {
    /// Sleeps before the next attempt, or gives back `error` once `deadline` has passed.
    async fn wait_or<E>(&mut self, deadline: Instant, error: E) -> Result<(), E> {
        if Instant::now() >= deadline {
            return Err(error);
        }
        self.0 = (self.0 + 1).min(8);
        let pause = (Duration::from_millis(250) * self.0).min(MAX_PAUSE);
        tokio::time::sleep(pause).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
