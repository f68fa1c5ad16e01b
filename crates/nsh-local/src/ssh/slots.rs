//! Slot files: `ssh/<host>/m<K>.s<S>.lock`, one flock each. A build holds one for its
//! whole life, so at most [`BUILDS_PER_MASTER`] builds use master K at a time; the kernel
//! releases the lock when the hook dies, however it dies. Blocking calls: run these off
//! the async runtime.

use std::fs::{File, TryLockError};
use std::path::Path;

use anyhow::{Context, Result, bail};

/// Builds sharing one master. A build holds one session for its channel, plus one
/// transient command (the agent probe and upload, or the `tail`/`rm` after a failure), plus
/// the new channel while a reconnect overlaps the old one: at most 3 sessions each, so 3
/// builds stay at 9, under sshd's default MaxSessions of 10 per connection.
pub const BUILDS_PER_MASTER: usize = 3;

/// Masters per host nsh will use: 3 × 256 concurrent builds per node is beyond any node
/// today; the bound only keeps a runaway loop finite.
pub const MAX_MASTERS: usize = 256;

/// A held slot: slot `slot` of master `master`, its file locked through `_file`.
pub struct Held {
    pub master: usize,
    pub slot: usize,
    _file: File,
}

/// Takes the first free slot on the lowest-numbered master not in `avoid`, so builds pack
/// onto few masters and the higher ones go idle and exit.
pub fn take(host_dir: &Path, avoid: &[usize]) -> Result<Held> {
    for master in (0..MAX_MASTERS).filter(|k| !avoid.contains(k)) {
        for slot in 0..BUILDS_PER_MASTER {
            let path = host_dir.join(format!("m{master}.s{slot}.lock"));
            let file = open(&path)?;
            if try_lock(&file).with_context(|| format!("cannot lock {}", path.display()))? {
                return Ok(Held {
                    master,
                    slot,
                    _file: file,
                });
            }
        }
    }
    bail!(
        "all {} SSH slots in {} are taken ({MAX_MASTERS} masters × {BUILDS_PER_MASTER} \
         builds): lower nix's max-jobs for this host",
        MAX_MASTERS * BUILDS_PER_MASTER,
        host_dir.display()
    )
}

/// Waits for the exclusive lock on `path` (created if missing); held while the file lives.
pub fn lock_exclusive(path: &Path) -> Result<File> {
    let file = open(path)?;
    file.lock()
        .with_context(|| format!("cannot lock {}", path.display()))?;
    Ok(file)
}

fn open(path: &Path) -> Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))
}

/// `Ok(false)` if another process holds it. std's file locks are `flock` on Linux, the
/// same lock queue_slots.rs takes.
fn try_lock(file: &File) -> std::io::Result<bool> {
    match file.try_lock() {
        Ok(()) => Ok(true),
        Err(TryLockError::WouldBlock) => Ok(false),
        Err(TryLockError::Error(e)) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_fill_the_lowest_master_first_and_free_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let held: Vec<Held> = (0..BUILDS_PER_MASTER + 1)
            .map(|_| take(dir.path(), &[]).unwrap())
            .collect();
        let masters: Vec<usize> = held.iter().map(|h| h.master).collect();
        let mut want = vec![0; BUILDS_PER_MASTER];
        want.push(1);
        assert_eq!(masters, want);
        // flock is per open file description: the same process taking again still sees
        // the held ones as taken, as another hook would.
        let mut held = held.into_iter();
        let first = held.next().unwrap();
        let freed = (first.master, first.slot);
        drop(first);
        let again = take(dir.path(), &[]).unwrap();
        assert_eq!((again.master, again.slot), freed);
        assert_eq!(held.len(), BUILDS_PER_MASTER);
    }

    #[test]
    fn avoided_masters_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let h = take(dir.path(), &[0, 1]).unwrap();
        assert_eq!(h.master, 2);
    }
}
