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
use std::process::Command;

use crate::log::log;
use crate::serve::Agent;

/// With `keep-failed` and a store the agent's Nix builds in itself (a path or `local…`
/// `remote-store`), points its build directory at [`kept_builds_dir`]: `TMPDIR` (Nix before
/// 2.30 without `build-dir`) and, for Nix 2.26+, `--option build-dir`. The node's daemon
/// ignores both and keeps its own.
pub fn direct(cmd: &mut Command, args: &mut Vec<String>, agent: &Agent) {
    let Some(kept) = kept_builds_dir(&agent.dir) else {
        return;
    };
    if let Err(e) = std::fs::create_dir_all(&kept) {
        log!(
            "cannot create {}: {e}; Nix keeps the build where it likes",
            kept.display()
        );
        return;
    }
    cmd.env("TMPDIR", &kept);
    let own_store = agent.store.starts_with('/') || agent.store.starts_with("local");
    if let (true, Some(dir)) = (
        own_store && has_build_dir(&agent.nix_version),
        kept.to_str(),
    ) {
        args.extend(["--option", "build-dir", dir].map(str::to_owned));
    }
}

/// Whether the Nix of `nix-store --version` output (`nix-store (Nix) 2.26.3`) has the
/// `build-dir` setting (2.26 on).
pub fn has_build_dir(version: &str) -> bool {
    let Some(v) = version.split_ascii_whitespace().last() else {
        return false;
    };
    let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= (2, 26),
        _ => false,
    }
}

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
    fn build_dir_setting_from_version() {
        assert!(has_build_dir("nix-store (Nix) 2.34.8"));
        assert!(has_build_dir("nix-store (Nix) 2.26.0"));
        assert!(has_build_dir("nix-store (Nix) 3.0"));
        assert!(!has_build_dir("nix-store (Nix) 2.8.0"));
        assert!(!has_build_dir("nix-store (Nix) 2.25.5"));
        assert!(!has_build_dir("garbage"));
        assert!(!has_build_dir(""));
    }

    #[test]
    fn kept_dir_is_beside_jobs() {
        assert_eq!(
            kept_builds_dir(Path::new("/home/u/.nsh/jobs/k1")),
            Some(PathBuf::from("/home/u/.nsh/kept-builds"))
        );
    }
}
