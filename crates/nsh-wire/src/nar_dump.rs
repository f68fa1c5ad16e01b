//! The NAR encoder: a tree on disk serialised exactly like `nix-store --dump`.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::{
    NAR_MAGIC, TOK_CLOSE, TOK_CONTENTS, TOK_DIRECTORY, TOK_ENTRY, TOK_EXECUTABLE, TOK_NAME,
    TOK_NODE, TOK_OPEN, TOK_REGULAR, TOK_SYMLINK, TOK_TARGET, TOK_TYPE,
};
use crate::framing::{write_bytes, write_u64};

/// Serialises the tree at `path` exactly like `nix-store --dump`.
/// Symlinks are stored, not followed; file contents are streamed.
pub fn dump(path: &Path, w: &mut impl Write) -> io::Result<()> {
    write_bytes(w, NAR_MAGIC)?;
    dump_node(path, w)
}

fn dump_node(path: &Path, w: &mut impl Write) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    let ft = meta.file_type();
    write_bytes(w, TOK_OPEN)?;
    write_bytes(w, TOK_TYPE)?;
    if ft.is_file() {
        write_bytes(w, TOK_REGULAR)?;
        if meta.permissions().mode() & 0o100 != 0 {
            write_bytes(w, TOK_EXECUTABLE)?;
            write_bytes(w, b"")?;
        }
        write_bytes(w, TOK_CONTENTS)?;
        let len = meta.len();
        write_u64(w, len)?;
        let file = File::open(path)?;
        let copied = io::copy(&mut file.take(len), w)?;
        if copied != len {
            return Err(io::Error::other(format!(
                "'{}' shrank while being dumped",
                path.display()
            )));
        }
        crate::framing::write_padding(w, len)?;
    } else if ft.is_symlink() {
        write_bytes(w, TOK_SYMLINK)?;
        write_bytes(w, TOK_TARGET)?;
        write_bytes(w, fs::read_link(path)?.as_os_str().as_bytes())?;
    } else if ft.is_dir() {
        write_bytes(w, TOK_DIRECTORY)?;
        let mut names = fs::read_dir(path)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<Vec<_>>>()?;
        // Raw byte order, like Nix's std::map<std::string, …>.
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in names {
            write_bytes(w, TOK_ENTRY)?;
            write_bytes(w, TOK_OPEN)?;
            write_bytes(w, TOK_NAME)?;
            write_bytes(w, name.as_bytes())?;
            write_bytes(w, TOK_NODE)?;
            dump_node(&path.join(&name), w)?;
            write_bytes(w, TOK_CLOSE)?;
        }
    } else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("'{}' is not a file, directory or symlink", path.display()),
        ));
    }
    write_bytes(w, TOK_CLOSE)
}
