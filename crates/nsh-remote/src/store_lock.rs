//! Locks every agent using one store takes, so that concurrent jobs share it safely:
//!
//! - the **upload lock** (exclusive), held from `QueryMissing` to the end of the import
//!   that answer asked for, so an input several jobs need crosses the link once: the others
//!   wait, then ask again and find it present (Nix's own remote builder does the same with
//!   its per-store upload lock);
//! - the **GC lock**, held shared from the agent's first query to its goodbye. A goodbye
//!   with `collect-garbage` collects only if it can take it exclusively at once, so no
//!   collection runs while another job's inputs (which have no GC root until its realise
//!   starts) are in the store: the last one out collects.
//!
//! Both are `flock`s, so the kernel releases them when the agent dies however it dies; a
//! waiter never outlives the holder's agent, whose own lease bounds it. The files live
//! where the store's scope is: inside a store given as a directory (a chroot store, per
//! node on local disk, shared when on a shared file system), else under the state dir,
//! keyed by host (the node's daemon store, or another store URL).

use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};

const UPLOAD_LOCK: &str = "upload.lock";
const GC_LOCK: &str = "gc.lock";

pub struct StoreLocks {
    dir: PathBuf,
    /// Our shared hold on the GC lock, once taken.
    gc: Mutex<Option<File>>,
}

/// The exclusive upload lock; released when dropped.
pub struct UploadLock {
    _file: File,
}

/// The GC lock held exclusively: collect while it lives.
pub struct GcExclusive {
    _file: File,
}

/// Where the locks of `store` live, for an agent whose job dir is under `state_dir`.
pub fn lock_dir(state_dir: &Path, hostname: &str, store: &str) -> PathBuf {
    let base = store.split('?').next().unwrap_or_default();
    if base.starts_with('/') {
        return Path::new(base).join("nix/var/nsh");
    }
    if base == "local"
        && let Some(root) = store
            .split(['?', '&'])
            .find_map(|kv| kv.strip_prefix("root="))
            .filter(|r| r.starts_with('/'))
    {
        return Path::new(root).join("nix/var/nsh");
    }
    let host: String = hostname
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' | '_' => c,
            _ => '_',
        })
        .collect();
    let key = match store {
        "" | "auto" | "daemon" => format!("{host}-daemon"),
        other => {
            use sha2::{Digest, Sha256};
            let h = Sha256::digest(other.as_bytes());
            let hex: String = h.iter().take(8).map(|b| format!("{b:02x}")).collect();
            format!("{host}-{hex}")
        }
    };
    state_dir.join("locks").join(key)
}

fn flock(file: &File, op: libc::c_int) -> std::io::Result<()> {
    loop {
        // SAFETY: flock on an fd we own; no memory is passed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), op) };
        if rc == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn is_would_block(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(libc::EWOULDBLOCK)
}

impl StoreLocks {
    pub fn new(dir: PathBuf) -> StoreLocks {
        StoreLocks {
            dir,
            gc: Mutex::new(None),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn open(&self, name: &str) -> Result<File> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .with_context(|| format!("creating the store's lock dir {}", self.dir.display()))?;
        let path = self.dir.join(name);
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("opening the store lock {}", path.display()))
    }

    /// Takes `op` on `name`, calling `on_wait` first if someone else holds it.
    fn take(&self, name: &str, op: libc::c_int, on_wait: &mut dyn FnMut()) -> Result<File> {
        let file = self.open(name)?;
        let what = || format!("locking {}", self.dir.join(name).display());
        match flock(&file, op | libc::LOCK_NB) {
            Ok(()) => return Ok(file),
            Err(e) if is_would_block(&e) => {}
            Err(e) => return Err(e).with_context(what),
        }
        on_wait();
        flock(&file, op).with_context(what)?;
        Ok(file)
    }

    /// Holds the GC lock shared from now to [`StoreLocks::release_for_gc`] (once taken,
    /// later calls return at once). Waits while a collection runs.
    pub fn hold_gc_shared(&self, on_wait: &mut dyn FnMut()) -> Result<()> {
        let mut slot = self.gc.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(self.take(GC_LOCK, libc::LOCK_SH, on_wait)?);
        }
        Ok(())
    }

    /// The upload lock, waiting for another job's upload to this store to end.
    pub fn upload(&self, on_wait: &mut dyn FnMut()) -> Result<UploadLock> {
        Ok(UploadLock {
            _file: self.take(UPLOAD_LOCK, libc::LOCK_EX, on_wait)?,
        })
    }

    /// Drops our shared hold and takes the GC lock exclusively if nobody else holds it:
    /// `None` when another agent still uses the store.
    pub fn release_for_gc(&self) -> Result<Option<GcExclusive>> {
        drop(self.gc.lock().unwrap_or_else(|p| p.into_inner()).take());
        let file = self.open(GC_LOCK)?;
        match flock(&file, libc::LOCK_EX | libc::LOCK_NB) {
            Ok(()) => Ok(Some(GcExclusive { _file: file })),
            Err(e) if is_would_block(&e) => Ok(None),
            Err(e) => {
                Err(e).with_context(|| format!("locking {}", self.dir.join(GC_LOCK).display()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_dirs_follow_the_store() {
        let s = Path::new("/st");
        assert_eq!(
            lock_dir(s, "node1", "/scratch/x"),
            PathBuf::from("/scratch/x/nix/var/nsh")
        );
        assert_eq!(
            lock_dir(s, "node1", "/scratch/x?compress=1"),
            PathBuf::from("/scratch/x/nix/var/nsh")
        );
        assert_eq!(
            lock_dir(s, "node1", "local?root=/r"),
            PathBuf::from("/r/nix/var/nsh")
        );
        assert_eq!(
            lock_dir(s, "node1", "auto"),
            PathBuf::from("/st/locks/node1-daemon")
        );
        assert_eq!(
            lock_dir(s, "a/b", "daemon"),
            PathBuf::from("/st/locks/a_b-daemon")
        );
        let other = lock_dir(s, "node1", "ssh-ng://x");
        assert!(other.starts_with("/st/locks") && other != lock_dir(s, "node2", "ssh-ng://x"));
    }

    #[test]
    fn upload_lock_excludes_and_gc_waits_for_the_last() {
        let dir = tempfile::tempdir().unwrap();
        let a = StoreLocks::new(dir.path().join("l"));
        let b = StoreLocks::new(dir.path().join("l"));
        let mut waited = false;
        let held = a.upload(&mut || waited = true).unwrap();
        assert!(!waited);
        // flock excludes across open file descriptions, as between two agents.
        let file = b.open(UPLOAD_LOCK).unwrap();
        assert!(is_would_block(
            &flock(&file, libc::LOCK_EX | libc::LOCK_NB).unwrap_err()
        ));
        drop(held);
        flock(&file, libc::LOCK_EX | libc::LOCK_NB).unwrap();

        a.hold_gc_shared(&mut || panic!("nobody collects")).unwrap();
        b.hold_gc_shared(&mut || panic!("shared with a")).unwrap();
        assert!(a.release_for_gc().unwrap().is_none(), "b still uses it");
        let gc = b.release_for_gc().unwrap();
        assert!(gc.is_some(), "the last one out collects");
        let mut waited = false;
        let c = StoreLocks::new(dir.path().join("l"));
        let t = std::thread::spawn(move || {
            c.hold_gc_shared(&mut || waited = true).unwrap();
            waited
        });
        std::thread::sleep(std::time::Duration::from_millis(200));
        drop(gc);
        assert!(t.join().unwrap(), "a new job waits for the collection");
    }
}
