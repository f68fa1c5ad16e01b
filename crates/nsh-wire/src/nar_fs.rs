//! Where the NAR decoder puts nodes: nowhere ([`NullSink`], for checking) or on disk
//! ([`FsSink`]: `*at()` calls relative to directory fds it created itself).
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use rustix::fs::{Mode, OFlags};

/// Best-effort removal of a partially unpacked tree (directories may be 0555).
pub(super) fn remove_tree(path: &Path) {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return;
    };
    if meta.is_dir() {
        let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o700));
        if let Ok(rd) = fs::read_dir(path) {
            for e in rd.flatten() {
                remove_tree(&e.path());
            }
        }
        let _ = fs::remove_dir(path);
    } else {
        let _ = fs::remove_file(path);
    }
}

/// Receives the nodes of a NAR as they are parsed. `parent == None` is the root.
pub(super) trait Sink {
    type Dir;
    /// Must read `contents` to its end (the parser drains what is left).
    fn file(
        &mut self,
        parent: Option<&Self::Dir>,
        name: &[u8],
        executable: bool,
        contents: &mut dyn Read,
    ) -> io::Result<()>;
    fn symlink(&mut self, parent: Option<&Self::Dir>, name: &[u8], target: &[u8])
    -> io::Result<()>;
    fn dir_enter(&mut self, parent: Option<&Self::Dir>, name: &[u8]) -> io::Result<Self::Dir>;
    fn dir_leave(&mut self, dir: Self::Dir) -> io::Result<()>;
}

pub(super) struct NullSink;

impl Sink for NullSink {
    type Dir = ();
    fn file(&mut self, _: Option<&()>, _: &[u8], _: bool, c: &mut dyn Read) -> io::Result<()> {
        io::copy(c, &mut io::sink()).map(drop)
    }
    fn symlink(&mut self, _: Option<&()>, _: &[u8], _: &[u8]) -> io::Result<()> {
        Ok(())
    }
    fn dir_enter(&mut self, _: Option<&()>, _: &[u8]) -> io::Result<()> {
        Ok(())
    }
    fn dir_leave(&mut self, _: ()) -> io::Result<()> {
        Ok(())
    }
}

/// Writes nodes with *at() calls relative to directory fds it created itself.
pub(super) struct FsSink<'a> {
    pub(super) root: Root<'a>,
    /// Set once the root node exists, so cleanup never removes what was there before.
    pub(super) created_root: bool,
}

/// Where the root node goes: the (trusted) parent of `dest`, and dest's file name.
pub(super) struct Root<'a> {
    pub(super) parent: OwnedFd,
    pub(super) name: &'a OsStr,
}

impl Root<'_> {
    fn at<'s>(&'s self, parent: Option<&'s OwnedFd>, name: &'s [u8]) -> (BorrowedFd<'s>, &'s [u8]) {
        match parent {
            Some(fd) => (fd.as_fd(), name),
            None => (self.parent.as_fd(), self.name.as_bytes()),
        }
    }
}

impl Sink for FsSink<'_> {
    type Dir = OwnedFd;

    fn file(
        &mut self,
        parent: Option<&OwnedFd>,
        name: &[u8],
        executable: bool,
        contents: &mut dyn Read,
    ) -> io::Result<()> {
        let (dir, name) = self.root.at(parent, name);
        // O_EXCL|O_NOFOLLOW: never reuse or follow anything already there.
        let fd = rustix::fs::openat(
            dir,
            name,
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )?;
        self.created_root |= parent.is_none();
        let mut file = File::from(fd);
        io::copy(contents, &mut file)?;
        let mode = if executable { 0o555 } else { 0o444 };
        rustix::fs::fchmod(&file, Mode::from_raw_mode(mode))?;
        Ok(())
    }

    fn symlink(&mut self, parent: Option<&OwnedFd>, name: &[u8], target: &[u8]) -> io::Result<()> {
        let (dir, name) = self.root.at(parent, name);
        rustix::fs::symlinkat(target, dir, name)?;
        self.created_root |= parent.is_none();
        Ok(())
    }

    fn dir_enter(&mut self, parent: Option<&OwnedFd>, name: &[u8]) -> io::Result<OwnedFd> {
        let (dir, name) = self.root.at(parent, name);
        rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o700))?;
        self.created_root |= parent.is_none();
        // NOFOLLOW + DIRECTORY: fails if something swapped the new dir for a symlink.
        let fd = rustix::fs::openat(
            dir,
            name,
            OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        // Independent of umask: owner needs write access while filling it.
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o700))?;
        Ok(fd)
    }

    fn dir_leave(&mut self, dir: OwnedFd) -> io::Result<()> {
        rustix::fs::fchmod(&dir, Mode::from_raw_mode(0o555))?;
        Ok(())
    }
}
