//! `keep-failed` on the node: where a failed build's directory is kept, and finding it in
//! Nix's messages.
//!
//! Nix keeps the build directory of a failed build with `keep-failed` and says so with
//! `note: keeping build directory '<dir>'` (2.8 to 2.33; 2.34 prints the path with its own
//! quoting). Where the directory is depends on who builds: a Nix that builds itself (a
//! chroot or local `remote-store`) makes it in `TMPDIR` (which the agent points at
//! [`kept_builds_dir`]) up to Nix 2.29 unless its `build-dir` setting (2.26+) says
//! otherwise; from 2.30 the default is the store's `<state>/builds`. The node's daemon uses
//! its own (`/tmp`, its `build-dir` or `/nix/var/nix/builds`). Either way the agent
//! reports the directory Nix names.

use std::path::{Path, PathBuf};

/// `<state>/kept-builds` for an agent in `<state>/jobs/<key>`: outside the job directory
/// (removed when the job ends) and never touched by nsh's cleanup or garbage collection.
pub fn kept_builds_dir(agent_dir: &Path) -> Option<PathBuf> {
    Some(agent_dir.parent()?.parent()?.join("kept-builds"))
}

/// The directory in Nix's "keeping build directory" message, if `text` is one.
pub fn parse_kept(text: &str) -> Option<String> {
    let rest = text.trim().strip_prefix("note: keeping build directory ")?;
    let dir = rest.trim_matches(|c| matches!(c, '\'' | '"' | '`'));
    let ok = dir.starts_with('/')
        && dir.len() < 4096
        && !dir.chars().any(|c| c.is_control())
        && !dir.split('/').any(|part| part == "..");
    ok.then(|| dir.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_kept_dir() {
        assert_eq!(
            parse_kept("note: keeping build directory '/tmp/nix-build-x.drv-0'").as_deref(),
            Some("/tmp/nix-build-x.drv-0")
        );
        assert_eq!(
            parse_kept("note: keeping build directory \"/s/kept-builds/nix-1-0\"").as_deref(),
            Some("/s/kept-builds/nix-1-0")
        );
        for bad in [
            "builder failed",
            "note: keeping build directory 'relative'",
            "note: keeping build directory '/tmp/a\nb'",
            "note: keeping build directory '/tmp/../etc'",
        ] {
            assert_eq!(parse_kept(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn kept_dir_is_beside_jobs() {
        assert_eq!(
            kept_builds_dir(Path::new("/home/u/.nsh/jobs/k1")),
            Some(PathBuf::from("/home/u/.nsh/kept-builds"))
        );
    }
}
