//! The token's file must be private: a warning when group or others can read a file that
//! sets `slurm-jwt-token`.

use std::path::Path;

/// A warning if `path` (which sets `slurm-jwt-token`) can be read by group or others.
pub fn warn_if_world_readable(path: &Path) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).ok()?.permissions().mode();
        world_readable_warning(path, mode)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// The pure part of [`warn_if_world_readable`].
pub fn world_readable_warning(path: &Path, mode: u32) -> Option<String> {
    if mode & 0o044 == 0 {
        return None;
    }
    let shown = path.display();
    let mut warning = format!(
        "nsh.conf: warning: {shown} sets slurm-jwt-token but is readable by group or others (mode {:04o}); run 'chmod 600 {shown}'",
        mode & 0o7777
    );
    if path.starts_with("/nix/store") {
        warning.push_str(
            ", or move the token out of the Nix store into a private file and '!include' it",
        );
    }
    Some(warning)
}
