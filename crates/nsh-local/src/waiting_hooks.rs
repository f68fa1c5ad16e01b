//! How often a hook asks whether its job started: often, because every moment between the
//! job's start and nsh noticing it holds the job's CPUs idle (a wave of 20 builds on the
//! testbed went from 0.83–1.35× raw jobs to 0.59–0.92× with 100 ms polls throughout the
//! first 30 s instead of 500 ms after 5 s), but within one budget for all the hooks of this
//! host, so that 200 waiting builds do not send slurmrestd 2,000 requests a second.
//!
//! Each waiting hook holds an exclusive `flock` on a file of its own in
//! `<runtime dir>/waiting/`; the others count the locked files. A killed hook's lock dies
//! with it, and the next count removes its file.

use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// Status requests per second all of the host's waiting hooks may make together: 100 ms
/// polls for up to 10 waiting hooks. On the 2-core testbed, where slurmrestd shares the
/// CPUs with the builds, 20 builds at -j20 spent 466 ms per job from its start to the end
/// of nsh's part (poll lag + own share, mean of 3 runs) at 200/s, 420 at 100/s and ~400 at
/// 40–50/s, where a job waits longer to be seen; 100 is the compromise.
const BUDGET_PER_SEC: u64 = 100;
/// The shortest pause between two polls of one job, and the pause once it waited long.
const FAST: Duration = Duration::from_millis(100);
const SLOW: Duration = Duration::from_secs(1);
/// A job still pending after this long is in a real queue: poll at [`SLOW`].
const PATIENT_AFTER: Duration = Duration::from_secs(30);
/// How long a count is reused.
const RECOUNT: Duration = Duration::from_secs(1);

/// This hook's place among the waiting ones; leaves it when dropped.
pub struct Waiting {
    _file: File,
    path: PathBuf,
    dir: PathBuf,
    counted: Option<(Instant, usize)>,
}

impl Waiting {
    pub fn join(runtime_dir: &Path) -> Result<Waiting> {
        let dir = runtime_dir.join("waiting");
        crate::runtime_dir::ensure_private_dir(&dir)?;
        let path = dir.join(format!(
            "{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let file = OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        file.lock()
            .with_context(|| format!("cannot lock {}", path.display()))?;
        Ok(Waiting {
            _file: file,
            path,
            dir,
            counted: None,
        })
    }

    /// The hooks waiting now, this one included (a count at most [`RECOUNT`] old).
    pub fn count(&mut self) -> usize {
        if let Some((at, n)) = self.counted
            && at.elapsed() < RECOUNT
        {
            return n;
        }
        let n = count_locked(&self.dir).max(1);
        self.counted = Some((Instant::now(), n));
        n
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Files in `dir` someone holds locked; the others (their hook died) are removed.
fn count_locked(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 1;
    };
    let mut n = 0;
    for e in entries.flatten() {
        let Ok(f) = File::open(e.path()) else {
            continue;
        };
        match f.try_lock_shared() {
            Err(TryLockError::WouldBlock) => n += 1,
            Ok(()) => {
                let _ = std::fs::remove_file(e.path());
            }
            Err(TryLockError::Error(_)) => {}
        }
    }
    n
}

/// The pause before the next poll of a job that has waited `waited`, with `waiting` hooks
/// of this host polling: [`FAST`] while the budget allows, slower when many share it.
pub fn poll_pause(waited: Duration, waiting: usize) -> Duration {
    let floor = if waited < PATIENT_AFTER { FAST } else { SLOW };
    let share = Duration::from_millis(1000 * waiting as u64 / BUDGET_PER_SEC);
    floor.max(share)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pause_is_fast_alone_and_shares_the_budget() {
        let s = Duration::from_secs;
        assert_eq!(poll_pause(s(1), 1), FAST);
        assert_eq!(poll_pause(s(20), 10), FAST);
        assert_eq!(poll_pause(s(20), 20), Duration::from_millis(200));
        assert_eq!(poll_pause(s(1), 200), s(2));
        assert_eq!(poll_pause(s(60), 1), SLOW);
        assert_eq!(poll_pause(s(60), 1000), s(10));
    }

    #[test]
    fn counts_live_waiters_and_removes_dead_ones() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = Waiting::join(dir.path()).unwrap();
        let b = Waiting::join(dir.path()).unwrap();
        // A file nobody holds: its hook died.
        std::fs::write(dir.path().join("waiting/123-dead"), b"").unwrap();
        assert_eq!(a.count(), 2);
        assert!(!dir.path().join("waiting/123-dead").exists());
        drop(b);
        assert_eq!(a.count(), 2, "a count is reused for a second");
        a.counted = None;
        assert_eq!(a.count(), 1);
    }
}
