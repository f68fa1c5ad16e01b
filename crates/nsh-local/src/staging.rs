//! Outputs are unpacked under a temporary name in the store directory and renamed into
//! place only once every check passed.
//!
//! The temporary tree is `<store>/tmp-nsh-<pid>-<random>/<output name>`: the layout of
//! Nix's own `createTempDirInStore` (`tmp-<pid>-<n>`, locked with `flock`). Nix's GC
//! deletes every entry of the store directory that is not a store path, except a `tmp-*`
//! directory someone holds an exclusive `flock` on (Nix ≥ 2.12, `gc.cc`
//! `deleteFromStore`); so the directory is locked while it exists, and a concurrent GC
//! leaves it alone. Nix 2.8 – 2.11 GC does not look at the lock: there, a GC running during
//! the download may delete the tree, which then fails the build and registers nothing.
//!
//! A name beginning `tmp-` can never be a store path (those begin with 32 nix32 digits and
//! a dash), so a tree left by a crash is never taken for a valid path; the next GC removes
//! it, since no one holds its lock any more.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use rand::Rng;
use rustix::fs::{FlockOperation, Mode, OFlags, RenameFlags};

/// Prefix of nsh's temporary trees in the store directory.
pub const TMP_PREFIX: &str = "tmp-nsh-";

/// A locked temporary directory in the store directory; removed with its contents when
/// dropped, unless [`Staged::commit`] moved its content into place.
#[derive(Debug)]
pub struct Staged {
    dir: PathBuf,
    /// The output's base name: the tree is unpacked at `dir/name`.
    name: String,
    /// Holds the `flock` (an open fd of `dir`).
    _lock: File,
}

impl Staged {
    /// Creates and locks `<store_dir>/tmp-nsh-<pid>-<random>` for the output `base_name`.
    pub fn new(store_dir: &Path, base_name: &str) -> Result<Staged> {
        let pid = std::process::id();
        let mut last = None;
        for _ in 0..8 {
            let suffix: u64 = rand::rng().random();
            let dir = store_dir.join(format!("{TMP_PREFIX}{pid}-{suffix:016x}"));
            match std::fs::create_dir(&dir) {
                Ok(()) => return Staged::lock(dir, base_name),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!(
                            "cannot create a temporary directory in {}",
                            store_dir.display()
                        )
                    });
                }
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no free name"))).with_context(|| {
            format!(
                "cannot create a temporary directory in {}",
                store_dir.display()
            )
        })
    }

    fn lock(dir: PathBuf, base_name: &str) -> Result<Staged> {
        let opened = rustix::fs::open(
            &dir,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io::Error::from)
        .and_then(|fd| {
            rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive)?;
            Ok(File::from(fd))
        });
        match opened {
            Ok(lock) => Ok(Staged {
                dir,
                name: base_name.to_string(),
                _lock: lock,
            }),
            Err(e) => {
                let _ = std::fs::remove_dir(&dir);
                Err(e).with_context(|| format!("cannot lock {}", dir.display()))
            }
        }
    }

    /// Where the NAR is to be unpacked.
    pub fn tree(&self) -> PathBuf {
        self.dir.join(&self.name)
    }

    /// Moves the unpacked tree to `dest` (in the same store directory) with one
    /// rename(2), refusing to replace anything there; then removes the temporary dir.
    pub fn commit(self, dest: &Path) -> Result<()> {
        let tree = self.tree();
        rename_noreplace(&tree, dest)
            .with_context(|| format!("cannot move {} to {}", tree.display(), dest.display()))?;
        // Drop removes the (now empty) directory and releases the lock.
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        remove_tree(&self.dir);
    }
}

/// rename(2) that fails if `to` exists (`RENAME_NOREPLACE`; where the filesystem lacks
/// it, a check for `to` first, which is enough here: the caller holds Nix's word that
/// the path is being built by us and removed any stale copy).
fn rename_noreplace(from: &Path, to: &Path) -> Result<()> {
    match rustix::fs::renameat_with(
        rustix::fs::CWD,
        from,
        rustix::fs::CWD,
        to,
        RenameFlags::NOREPLACE,
    ) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => {
            if std::fs::symlink_metadata(to).is_ok() {
                bail!("{} exists", to.display());
            }
            std::fs::rename(from, to).map_err(Into::into)
        }
        Err(e) => Err(io::Error::from(e).into()),
    }
}

/// Removes a tree whose directories may be read-only (0555, as the unpacker leaves them).
pub fn remove_tree(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return;
    };
    if meta.is_dir() {
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700));
        if let Ok(rd) = std::fs::read_dir(path) {
            for e in rd.flatten() {
                remove_tree(&e.path());
            }
        }
        let _ = std::fs::remove_dir(path);
    } else {
        let _ = std::fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp_entries(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(TMP_PREFIX))
            .collect()
    }

    #[test]
    fn commit_moves_and_cleans_up() {
        let store = tempfile::tempdir().unwrap();
        let s = Staged::new(store.path(), "abc-out").unwrap();
        let name = s.dir.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with(TMP_PREFIX), "{name}");
        // Locked: a second exclusive flock (as Nix's GC tries) fails.
        let other = File::open(&s.dir).unwrap();
        assert!(rustix::fs::flock(&other, FlockOperation::NonBlockingLockExclusive).is_err());
        std::fs::create_dir(s.tree()).unwrap();
        std::fs::write(s.tree().join("f"), "x").unwrap();
        let dest = store.path().join("abc-out");
        s.commit(&dest).unwrap();
        assert_eq!(std::fs::read(dest.join("f")).unwrap(), b"x");
        assert!(tmp_entries(store.path()).is_empty());
        // Unlocked once gone.
        assert!(rustix::fs::flock(&other, FlockOperation::NonBlockingLockExclusive).is_ok());
    }

    #[test]
    fn commit_never_replaces_and_drop_removes() {
        let store = tempfile::tempdir().unwrap();
        let dest = store.path().join("abc-out");
        std::fs::create_dir(&dest).unwrap();
        let s = Staged::new(store.path(), "abc-out").unwrap();
        std::fs::create_dir(s.tree()).unwrap();
        assert!(s.commit(&dest).is_err());
        assert!(dest.exists());
        assert!(tmp_entries(store.path()).is_empty());
        // Dropped without commit, read-only contents and all.
        let s = Staged::new(store.path(), "x").unwrap();
        std::fs::create_dir(s.tree()).unwrap();
        std::fs::write(s.tree().join("f"), "x").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(s.tree(), std::fs::Permissions::from_mode(0o555)).unwrap();
        drop(s);
        assert!(tmp_entries(store.path()).is_empty());
    }
}
