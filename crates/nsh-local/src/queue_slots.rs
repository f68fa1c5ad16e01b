//! `max-queued-jobs`: a cap on this host's nsh jobs alive in the queue at once, shared by
//! every hook process of the host.
//!
//! Nix starts one hook process per accepted build, so the count cannot live in
//! memory. The runtime dir holds `queue-slots/slot-<i>` for i < cap; a hook takes a slot by
//! holding an exclusive `flock` on one of them from before the submit until its job is gone.
//! A lock dies with its last holder, so a killed hook cannot leak a slot; the reaper
//! inherits the locked file (reaper.rs) and keeps the slot until the job has left the queue,
//! also when it had to cancel the job. No free slot: the driver answers `# postpone` and
//! Nix offers the build again after `build-poll-interval` seconds.

use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{Context, Result};

/// One held slot; dropping it (in every process holding the file) frees the slot.
#[derive(Debug)]
pub struct Slot {
    file: File,
}

impl Slot {
    /// The locked file, for a child process that must keep the slot (the reaper).
    pub fn file(&self) -> &File {
        &self.file
    }
}

/// The outcome of [`claim`].
#[derive(Debug)]
pub enum Claim {
    /// No cap is set: nothing to hold.
    Uncapped,
    Taken(Slot),
    /// All `cap` slots are held by other builds of this host.
    Full {
        cap: u32,
    },
}

/// Takes a free slot of `cap` (`max-queued-jobs`; 0 = no cap) in `runtime_dir`.
pub fn claim(runtime_dir: &Path, cap: u32) -> Result<Claim> {
    if cap == 0 {
        return Ok(Claim::Uncapped);
    }
    Ok(match try_take(&runtime_dir.join("queue-slots"), cap)? {
        Some(file) => Claim::Taken(Slot { file }),
        None => Claim::Full { cap },
    })
}

/// One of `n` files `slot-<i>` in `dir` (created 0700), locked with an exclusive `flock`,
/// or `None` if other open files hold all of them. Also counts slurmrestd connections
/// (scheduler/slurm_rest/permits.rs).
pub fn try_take(dir: &Path, n: u32) -> Result<Option<File>> {
    crate::runtime_dir::ensure_private_dir(dir)?;
    // Start at a random slot: takers that all start at 0 would contend on the same files.
    let start = rand::random::<u32>() % n.max(1);
    for i in 0..n {
        let path = dir.join(format!("slot-{}", (start + i) % n));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot open the slot file {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => return Ok(Some(file)),
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", path.display()));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::{Claim, claim};

    fn taken(c: Claim) -> super::Slot {
        match c {
            Claim::Taken(s) => s,
            other => panic!("expected a slot, got {other:?}"),
        }
    }

    /// A slot freed by a drop, taken again. Another test of this process may be forking a
    /// child at that moment: until the child execs, its copy of the descriptor keeps the
    /// lock, so the claim is retried for up to a second.
    fn taken_after_drop(dir: &std::path::Path, cap: u32) -> super::Slot {
        for _ in 0..1000 {
            if let Claim::Taken(s) = claim(dir, cap).unwrap() {
                return s;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        panic!("the freed slot was never free again");
    }

    #[test]
    fn no_cap_holds_nothing() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(claim(dir.path(), 0).unwrap(), Claim::Uncapped));
        assert!(!dir.path().join("queue-slots").exists());
    }

    #[test]
    fn cap_counts_holders_and_frees_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let a = taken(claim(dir.path(), 2).unwrap());
        let b = taken(claim(dir.path(), 2).unwrap());
        assert!(matches!(
            claim(dir.path(), 2).unwrap(),
            Claim::Full { cap: 2 }
        ));
        drop(a);
        let c = taken_after_drop(dir.path(), 2);
        assert!(matches!(
            claim(dir.path(), 2).unwrap(),
            Claim::Full { cap: 2 }
        ));
        drop((b, c));
        let _d = taken_after_drop(dir.path(), 2);
    }

    #[test]
    fn a_duplicate_of_the_file_keeps_the_slot() {
        // What the reaper inherits: the same open file, so the same lock.
        let dir = tempfile::tempdir().unwrap();
        let a = taken(claim(dir.path(), 1).unwrap());
        let inherited = a.file().try_clone().unwrap();
        drop(a);
        assert!(matches!(
            claim(dir.path(), 1).unwrap(),
            Claim::Full { cap: 1 }
        ));
        drop(inherited);
        let _b = taken_after_drop(dir.path(), 1);
    }
}
