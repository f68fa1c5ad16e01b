//! A private local directory for nsh's own files (SSH master sockets, locks).

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};

/// `$NSH_RUNTIME_DIR`, else `$XDG_RUNTIME_DIR/nsh`, else `$HOME/.cache/nsh`, else
/// `/nix/var/nsh` — created 0700 and required to be ours and private, because SSH control
/// sockets in it give access to the cluster.
pub fn runtime_dir() -> Result<PathBuf> {
    let dir = if let Some(d) = std::env::var_os("NSH_RUNTIME_DIR") {
        PathBuf::from(d)
    } else if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR") {
        PathBuf::from(d).join("nsh")
    } else if let Some(h) = std::env::var_os("HOME").filter(|h| !h.is_empty() && h != "/") {
        PathBuf::from(h).join(".cache").join("nsh")
    } else {
        PathBuf::from("/nix/var/nsh")
    };
    ensure_private_dir(&dir)?;
    Ok(dir)
}

/// Creates `dir` (and parents) with mode 0700 if missing; refuses one that another user
/// owns or that others can write.
pub fn ensure_private_dir(dir: &std::path::Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create nsh's runtime directory {}", dir.display()))?;
    let meta =
        std::fs::metadata(dir).with_context(|| format!("cannot inspect {}", dir.display()))?;
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    if meta.uid() != uid {
        bail!(
            "{} belongs to uid {}, not to this user (uid {uid}); remove it or set NSH_RUNTIME_DIR",
            dir.display(),
            meta.uid()
        );
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot make {} private", dir.display()))?;
    }
    Ok(())
}
