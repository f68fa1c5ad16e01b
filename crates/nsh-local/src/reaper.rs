//! The reaper: a small detached process that cancels the job if the hook dies first.
//!
//! Nix before 2.35 SIGKILLs the hook's whole process group on Ctrl-C, with no warning
//! (design §4), so cancellation cannot live in the hook. At submit time the hook starts
//! `nsh __reap <job>` in a new session, holding nothing of Nix's (no fd 1, 2 or 4), with a
//! pipe as its stdin. The hook writes `done` before it exits normally; if the pipe closes
//! without it, the hook was killed and the reaper cancels the job.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::scheduler::{JobId, Scheduler};

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

/// Starts the reaper for `job`.
pub fn spawn(job: &JobId) -> Result<ReaperHandle> {
    let exe = std::env::current_exe().context("cannot find nsh's own executable")?;
    let mut cmd = Command::new(exe);
    cmd.arg("__reap")
        .arg(&job.0)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            // Out of the hook's process group and session: Nix kills those.
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            // Hold none of Nix's fds (its EOF on fd 1/2 means "build finished").
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("cannot start the reaper")?;
    let pipe = child.stdin.take();
    // The reaper outlives us; nobody waits for it (init reaps it once we are gone).
    std::mem::forget(child);
    Ok(ReaperHandle { pipe })
}

/// Body of `nsh __reap <job>`: wait for the verdict, cancel if there is none.
pub fn run<S: Scheduler>(
    rt: &tokio::runtime::Runtime,
    job: &str,
    connect: impl AsyncFnOnce() -> Result<S>,
) -> Result<()> {
    let mut verdict = Vec::new();
    let _ = std::io::stdin().take(64).read_to_end(&mut verdict);
    if verdict.starts_with(b"done") {
        return Ok(());
    }
    let job = JobId(job.to_string());
    rt.block_on(async {
        let sched = connect().await?;
        // Transient API trouble should not leave the job running: retry for a while.
        let mut last = None;
        for attempt in 0..20u32 {
            match sched.cancel(&job).await {
                Ok(()) => return Ok(()),
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(250 * u64::from(attempt.min(8) + 1))).await;
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("cancel failed")))
    })
}
