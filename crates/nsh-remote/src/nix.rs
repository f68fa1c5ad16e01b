//! Which `nix-store` the agent runs and how its command lines are built.
//!
//! Every argument that comes from the socket passes [`check_path_arg`] first: a store path
//! that starts with `-` would otherwise be read by `nix-store` as an option.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use std::sync::Arc;

use anyhow::{Context, Result, bail};

use crate::procs::{ChildGuard, Children};

/// The token variable; never passed on to children.
pub const TOKEN_ENV: &str = "NSH_AGENT_TOKEN";

/// Places to look for `nix-store` when it is not on `PATH`.
const FALLBACK_DIRS: &[&str] = &[
    "/nix/var/nix/profiles/default/bin",
    "/run/current-system/sw/bin",
    "/usr/bin",
];

/// Most paths passed on one `nix-store` command line.
pub const MAX_ARGS: usize = 500;

#[derive(Debug, Clone)]
pub struct NixStore {
    program: PathBuf,
    /// `None` for `auto` (no `--store` flag).
    store: Option<String>,
    /// Nix's own build hook next to a relocated Nix (`<bin_dir>/../libexec/nix/build-remote`),
    /// passed to `--realise` as `build-hook`; `None` leaves the setting alone.
    build_hook: Option<PathBuf>,
}

impl NixStore {
    /// Finds `nix-store`: `<bin_dir>/nix-store` when given, else on `PATH` or a usual place.
    pub fn locate(bin_dir: Option<&Path>, store: &str) -> Result<NixStore> {
        let build_hook = bin_dir.and_then(relocated_build_hook);
        let program = match bin_dir {
            Some(dir) => {
                let p = dir.join("nix-store");
                if !is_executable(&p) {
                    bail!(
                        "{} is missing or not executable: check --nix-bin-dir (remote-nix-bin-dir)",
                        p.display()
                    );
                }
                p
            }
            None => find_on_path().context(
                "nix-store not found on PATH nor in /nix/var/nix/profiles/default/bin, \
                 /run/current-system/sw/bin, /usr/bin: install Nix on the node or set \
                 remote-nix-bin-dir",
            )?,
        };
        let store = match store {
            "" | "auto" => None,
            s => Some(s.to_owned()),
        };
        Ok(NixStore {
            program,
            store,
            build_hook,
        })
    }

    pub fn program(&self) -> &Path {
        &self.program
    }

    /// The `build-hook` a realise must use, if the Nix in `--nix-bin-dir` ships one: Nix 2.8
    /// runs its compiled-in `/usr/libexec/nix/build-remote` otherwise, which a node without
    /// Nix lacks.
    pub fn build_hook(&self) -> Option<&Path> {
        self.build_hook.as_deref()
    }

    /// A `nix-store [--store S]` command without the token, in its own process group, with
    /// stdin closed.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        if let Some(s) = &self.store {
            cmd.arg("--store").arg(s);
        }
        cmd.env_remove(TOKEN_ENV)
            .stdin(Stdio::null())
            .process_group(0);
        cmd
    }

    /// `nix-daemon --stdio [--store S]` from the same Nix as `nix-store`, for adding paths
    /// with the worker protocol (see `import.rs`).
    pub fn daemon_command(&self) -> Result<Command> {
        let program = self.program.with_file_name("nix-daemon");
        if !is_executable(&program) {
            bail!(
                "{} is missing: the agent adds inputs through nix-daemon --stdio from the \
                 same Nix as {}",
                program.display(),
                self.program.display()
            );
        }
        let mut cmd = Command::new(program);
        cmd.arg("--stdio");
        if let Some(s) = &self.store {
            cmd.arg("--store").arg(s);
        }
        cmd.env_remove(TOKEN_ENV).process_group(0);
        Ok(cmd)
    }

    /// `nix-store --dump` of a store path. `--dump` reads the file system, not the store
    /// (Nix 2.34 with `--store /scratch/s` looked for `//nix/store/…`), so for a chroot
    /// store given as a directory it is pointed at the physical copy. Other store URLs
    /// (e.g. `local?root=…`) are not translated.
    pub fn dump_command(&self, path: &str) -> Command {
        let physical = match &self.store {
            Some(s) if s.starts_with('/') => Path::new(s).join(path.trim_start_matches('/')),
            _ => PathBuf::from(path),
        };
        let mut cmd = Command::new(&self.program);
        cmd.arg("--dump")
            .arg(physical)
            .env_remove(TOKEN_ENV)
            .stdin(Stdio::null())
            .process_group(0);
        cmd
    }

    /// Runs `nix-store [--store S] <args>` to completion and returns its stdout, or an error
    /// that quotes its stderr.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        let out = self
            .command()
            .args(args)
            .output()
            .with_context(|| format!("running {}", self.program.display()))?;
        stdout_or_error(args, out)
    }

    /// Like [`NixStore::run`], with the child's group registered in `children` meanwhile.
    pub fn run_registered(&self, children: &Arc<Children>, args: &[&str]) -> Result<String> {
        let child = self
            .command()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("running {}", self.program.display()))?;
        let _guard = ChildGuard::new(children, child.id() as i32);
        let out = child
            .wait_with_output()
            .with_context(|| format!("waiting for {}", self.program.display()))?;
        stdout_or_error(args, out)
    }

    /// `nix-store --version`, e.g. `nix-store (Nix) 2.34.1`.
    pub fn version(&self) -> Result<String> {
        let out = Command::new(&self.program)
            .arg("--version")
            .env_remove(TOKEN_ENV)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {} --version", self.program.display()))?;
        if !out.status.success() {
            bail!(
                "{} --version failed ({}): {}",
                self.program.display(),
                out.status,
                tail_text(&out.stderr, 2000)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// The store paths among `paths` that the store does not hold (valid ones are left out).
    pub fn query_missing(&self, paths: &[String]) -> Result<Vec<String>> {
        let mut missing = Vec::new();
        for batch in paths.chunks(MAX_ARGS) {
            let mut args = vec!["--check-validity", "--print-invalid"];
            for p in batch {
                check_path_arg(p)?;
                args.push(p);
            }
            let out = self.run(&args)?;
            missing.extend(out.lines().filter(|l| !l.is_empty()).map(str::to_owned));
        }
        Ok(missing)
    }
}

/// The last `max` bytes of a child's stderr, as text, trimmed.
pub fn tail_text(bytes: &[u8], max: usize) -> String {
    let start = bytes.len().saturating_sub(max);
    let s = String::from_utf8_lossy(bytes.get(start..).unwrap_or_default());
    s.trim().to_owned()
}

/// Refuses anything but an absolute path without NUL or newline: such strings go into
/// `nix-store` argv and into line-oriented output.
pub fn check_path_arg(p: &str) -> Result<()> {
    if !p.starts_with('/') || p.contains(['\0', '\n']) || p.len() > 4096 {
        bail!("refusing {p:?}: not an absolute store path");
    }
    Ok(())
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// `<bin_dir>/../libexec/nix/build-remote`, when it exists and is executable. Only the
/// directory is canonicalised: the file is a symlink to `nix`, which picks its personality
/// from the name it is run by (resolved, `nix` would read the verbosity as a command).
fn relocated_build_hook(bin_dir: &Path) -> Option<PathBuf> {
    let hook = bin_dir.join("../libexec/nix/build-remote");
    if !is_executable(&hook) {
        return None;
    }
    let dir = std::fs::canonicalize(bin_dir.join("../libexec/nix")).ok()?;
    Some(dir.join("build-remote"))
}

fn find_on_path() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(FALLBACK_DIRS.iter().map(PathBuf::from))
        .map(|d| d.join("nix-store"))
        .find(|p| is_executable(p))
}

/// A finished nix-store's stdout, or an error quoting the end of its stderr.
fn stdout_or_error(args: &[&str], out: std::process::Output) -> Result<String> {
    if !out.status.success() {
        bail!(
            "nix-store {} failed ({}): {}",
            args.first().copied().unwrap_or_default(),
            out.status,
            tail_text(&out.stderr, 2000)
        );
    }
    String::from_utf8(out.stdout).context("nix-store printed non-UTF-8 output")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_option_like_paths() {
        assert!(check_path_arg("/nix/store/aaaa-x").is_ok());
        assert!(check_path_arg("--delete").is_err());
        assert!(check_path_arg("relative").is_err());
        assert!(check_path_arg("/nix/store/a\nb").is_err());
    }

    #[test]
    fn store_auto_means_no_flag() {
        let dir = std::env::temp_dir();
        let fake = dir.join(format!("nsh-remote-test-{}", std::process::id()));
        std::fs::create_dir_all(&fake).unwrap();
        let bin = fake.join("nix-store");
        std::fs::write(&bin, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let auto = NixStore::locate(Some(&fake), "auto").unwrap();
        let args: Vec<_> = auto.command().get_args().map(|a| a.to_owned()).collect();
        assert!(args.is_empty());
        let chroot = NixStore::locate(Some(&fake), "/scratch/s").unwrap();
        let args: Vec<_> = chroot.command().get_args().map(|a| a.to_owned()).collect();
        assert_eq!(args, ["--store", "/scratch/s"]);
        let dump: Vec<_> = chroot
            .dump_command("/nix/store/aaaa-x")
            .get_args()
            .map(|a| a.to_owned())
            .collect();
        assert_eq!(dump, ["--dump", "/scratch/s/nix/store/aaaa-x"]);
        let dump: Vec<_> = auto
            .dump_command("/nix/store/aaaa-x")
            .get_args()
            .map(|a| a.to_owned())
            .collect();
        assert_eq!(dump, ["--dump", "/nix/store/aaaa-x"]);
        assert!(NixStore::locate(Some(&dir.join("does-not-exist")), "auto").is_err());
        std::fs::remove_dir_all(&fake).unwrap();
    }

    #[test]
    fn build_hook_only_next_to_a_relocated_nix() {
        let root = std::env::temp_dir().join(format!("nsh-remote-hook-{}", std::process::id()));
        let bin = root.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let store = bin.join("nix-store");
        std::fs::write(&store, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o755)).unwrap();
        // No libexec: the setting is left alone.
        assert_eq!(
            NixStore::locate(Some(&bin), "auto").unwrap().build_hook(),
            None
        );
        let libexec = root.join("libexec/nix");
        std::fs::create_dir_all(&libexec).unwrap();
        let hook = libexec.join("build-remote");
        // As in a relocated Nix: a symlink to `nix`, whose name must be kept.
        let nix = bin.join("nix");
        std::fs::write(&nix, "#!/bin/sh\n").unwrap();
        std::os::unix::fs::symlink("../../bin/nix", &hook).unwrap();
        // Present but not executable: still left alone.
        assert_eq!(
            NixStore::locate(Some(&bin), "auto").unwrap().build_hook(),
            None
        );
        std::fs::set_permissions(&nix, std::fs::Permissions::from_mode(0o755)).unwrap();
        let found = NixStore::locate(Some(&bin), "auto").unwrap();
        assert_eq!(
            found.build_hook(),
            Some(
                std::fs::canonicalize(&libexec)
                    .unwrap()
                    .join("build-remote")
                    .as_path()
            )
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}
