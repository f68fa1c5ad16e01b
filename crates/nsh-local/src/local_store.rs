//! The local Nix store, reached through `nix-store` (nsh links no part of Nix).
//!
//! Outputs are registered without taking Nix's path locks, which the waiting Nix holds
//! while the hook runs: unpack the NAR at the store path, then `nix-store --register-validity
//! --hash-given`, which is a database transaction and works on every Nix from 2.8 on.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use nsh_wire::agent_protocol::PathInfo;

/// Where the local store lives, derived from the `store` setting Nix passed to the hook.
#[derive(Debug, Clone)]
pub struct LocalStore {
    /// Argument for `nix-store --store`.
    pub url: String,
    /// Logical store directory (`/nix/store`).
    pub store_dir: String,
    /// Where store paths physically are (differs for chroot stores).
    pub real_store_dir: PathBuf,
    /// Nix's state directory (its database is `db/db.sqlite` there).
    pub state_dir: PathBuf,
}

/// Metadata for registering one path.
#[derive(Debug, Clone)]
pub struct PathRegistration {
    pub path: String,
    pub nar_sha256_hex: String,
    pub nar_size: u64,
    pub deriver: Option<String>,
    pub references: Vec<String>,
}

impl LocalStore {
    /// `store` is the value of Nix's `store` setting (`auto`, `daemon`, `local`,
    /// `local?root=/x`, `/x`, `unix://…`).
    pub fn from_setting(store: &str) -> Result<LocalStore> {
        let store_dir = std::env::var("NIX_STORE_DIR").unwrap_or_else(|_| "/nix/store".into());
        let store = store.trim();
        let mut params = None;
        let (url, root) = if store.is_empty()
            || store == "auto"
            || store == "daemon"
            || store == "local"
            || store.starts_with("unix://")
        {
            // The hook runs as root on the machine that owns the store, so it opens the
            // database directly; the daemon protocol cannot register paths.
            ("local".to_string(), None)
        } else if let Some(rest) = store.strip_prefix("local?") {
            params = Some(rest);
            let root = rest
                .split('&')
                .find_map(|kv| kv.strip_prefix("root="))
                .map(PathBuf::from);
            (store.to_string(), root)
        } else if store.starts_with('/') {
            (store.to_string(), Some(PathBuf::from(store)))
        } else {
            bail!(
                "the local store '{store}' is not one nsh can write to; nsh supports local \
                 stores (auto, daemon, local, local?root=…, or a path)"
            );
        };
        let real_store_dir = match &root {
            Some(r) => r.join(store_dir.trim_start_matches('/')),
            None => PathBuf::from(&store_dir),
        };
        let state_dir = crate::ca_db::state_dir(params, root.as_deref());
        Ok(LocalStore {
            url,
            store_dir,
            real_store_dir,
            state_dir,
        })
    }

    /// Physical location of a store path.
    pub fn real_path(&self, store_path: &str) -> Result<PathBuf> {
        let base = store_path
            .strip_prefix(&self.store_dir)
            .and_then(|r| r.strip_prefix('/'))
            .filter(|b| !b.is_empty() && !b.contains('/') && b != &"." && b != &"..")
            .with_context(|| format!("'{store_path}' is not a path in {}", self.store_dir))?;
        Ok(self.real_store_dir.join(base))
    }

    fn nix_store(&self) -> Command {
        let mut cmd = Command::new("nix-store");
        cmd.arg("--store").arg(&self.url);
        cmd.stdin(Stdio::null());
        cmd
    }

    /// The closure of `paths` (`nix-store --query --requisites`).
    pub fn requisites(&self, paths: &[String]) -> Result<Vec<String>> {
        let mut cmd = self.nix_store();
        cmd.arg("--query").arg("--requisites").args(paths);
        Ok(lines(&run(cmd, "query the closure of the build's inputs")?))
    }

    /// Which of `paths` are valid in the local store.
    pub fn valid_subset(&self, paths: &[String]) -> Result<BTreeSet<String>> {
        let mut invalid = BTreeSet::new();
        for chunk in paths.chunks(500) {
            let mut cmd = self.nix_store();
            cmd.args(["--check-validity", "--print-invalid"])
                .args(chunk);
            invalid.extend(lines(&run(cmd, "check which paths are valid locally")?));
        }
        Ok(paths
            .iter()
            .filter(|p| !invalid.contains(*p))
            .cloned()
            .collect())
    }

    /// What the local database records of `paths` (`nix-store --dump-db`), dependencies
    /// first.
    pub fn path_infos(&self, paths: &[String]) -> Result<Vec<PathInfo>> {
        let mut infos = Vec::with_capacity(paths.len());
        for chunk in paths.chunks(500) {
            let mut cmd = self.nix_store();
            cmd.arg("--dump-db").args(chunk);
            infos.extend(parse_dump_db(&run(cmd, "read the inputs' metadata")?)?);
        }
        Ok(dependencies_first(infos))
    }

    /// Removes a stale, invalid copy of a path that is about to be unpacked. The caller
    /// has checked the path is not valid (Nix holds its lock and asked for it to be built).
    pub fn remove_stale(&self, store_path: &str) -> Result<()> {
        let real = self.real_path(store_path)?;
        match std::fs::symlink_metadata(&real) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("cannot inspect {}", real.display())),
            Ok(m) if m.is_dir() => {
                make_writable(&real);
                std::fs::remove_dir_all(&real)
                    .with_context(|| format!("cannot remove stale {}", real.display()))
            }
            Ok(_) => std::fs::remove_file(&real)
                .with_context(|| format!("cannot remove stale {}", real.display())),
        }
    }

    /// Registers unpacked outputs as valid, all in one transaction.
    pub fn register_valid(&self, regs: &[PathRegistration]) -> Result<()> {
        let mut input = String::new();
        for r in regs {
            input.push_str(&r.path);
            input.push('\n');
            input.push_str(&format!("sha256:{}\n{}\n", r.nar_sha256_hex, r.nar_size));
            input.push_str(r.deriver.as_deref().unwrap_or(""));
            input.push('\n');
            input.push_str(&format!("{}\n", r.references.len()));
            for reference in &r.references {
                input.push_str(reference);
                input.push('\n');
            }
        }
        let mut cmd = self.nix_store();
        cmd.args(["--register-validity", "--hash-given"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .context("cannot start 'nix-store --register-validity'")?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(input.as_bytes())
                .context("cannot write to 'nix-store --register-validity'")?;
        }
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "'nix-store --register-validity' failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }
}

fn make_writable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
    for e in entries.flatten() {
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            make_writable(&e.path());
        }
    }
}

fn run(mut cmd: Command, what: &str) -> Result<String> {
    let out = cmd
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .output()
        .with_context(|| format!("cannot start nix-store to {what} (is nix-store on PATH?)"))?;
    if !out.status.success() {
        bail!(
            "nix-store could not {what} ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8(out.stdout)
        .with_context(|| format!("nix-store output to {what} is not UTF-8"))
}

/// Parses `nix-store --dump-db` output: per path its name, NAR sha256 (hex), NAR size,
/// deriver (empty line for none), the number of references, then the references.
fn parse_dump_db(out: &str) -> Result<Vec<PathInfo>> {
    let mut it = out.lines();
    let mut infos = Vec::new();
    while let Some(path) = it.next() {
        if path.is_empty() {
            continue;
        }
        let mut field = |what: &str| {
            it.next()
                .with_context(|| format!("nix-store --dump-db: no {what} for {path}"))
        };
        let nar_hash = field("NAR hash")?.trim_start_matches("sha256:").to_string();
        let nar_size = field("NAR size")?
            .parse()
            .with_context(|| format!("nix-store --dump-db: bad NAR size for {path}"))?;
        let deriver = Some(field("deriver")?.to_string()).filter(|d| !d.is_empty());
        let count: usize = field("reference count")?
            .parse()
            .with_context(|| format!("nix-store --dump-db: bad reference count for {path}"))?;
        let references = (0..count)
            .map(|_| field("reference").map(str::to_string))
            .collect::<Result<Vec<_>>>()?;
        infos.push(PathInfo {
            path: path.to_string(),
            nar_hash,
            nar_size,
            references,
            deriver,
        });
    }
    Ok(infos)
}

/// Orders `infos` so that every path comes after the ones it refers to among them: a
/// store accepts a path only once its references are valid.
fn dependencies_first(infos: Vec<PathInfo>) -> Vec<PathInfo> {
    let mut left: Vec<PathInfo> = infos;
    let mut out: Vec<PathInfo> = Vec::with_capacity(left.len());
    let mut placed: BTreeSet<String> = BTreeSet::new();
    while !left.is_empty() {
        let names: BTreeSet<String> = left.iter().map(|i| i.path.clone()).collect();
        let (ready, waiting): (Vec<_>, Vec<_>) = left.into_iter().partition(|i| {
            i.references
                .iter()
                .all(|r| r == &i.path || placed.contains(r) || !names.contains(r))
        });
        if ready.is_empty() {
            // A reference cycle cannot occur in a store; keep the given order if it does.
            out.extend(waiting);
            break;
        }
        placed.extend(ready.iter().map(|i| i.path.clone()));
        out.extend(ready);
        left = waiting;
    }
    out
}

fn lines(s: &str) -> Vec<String> {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_db_parsed_and_ordered() {
        let out = "/nix/store/b-top\nab12\n500\n/nix/store/d-top.drv\n2\n/nix/store/a-dep\n/nix/store/b-top\n\
                   /nix/store/a-dep\nsha256:cd34\n300\n\n0\n";
        let infos = dependencies_first(parse_dump_db(out).unwrap());
        assert_eq!(infos[0].path, "/nix/store/a-dep");
        assert_eq!(infos[0].nar_hash, "cd34");
        assert_eq!(infos[0].deriver, None);
        assert_eq!(infos[1].path, "/nix/store/b-top");
        assert_eq!(infos[1].nar_size, 500);
        assert_eq!(infos[1].deriver.as_deref(), Some("/nix/store/d-top.drv"));
        assert_eq!(infos[1].references.len(), 2);
        assert!(parse_dump_db("/nix/store/x\nab\nnot-a-number\n\n0\n").is_err());
        assert!(parse_dump_db("/nix/store/x\nab\n1\n\n2\n/nix/store/y\n").is_err());
    }

    #[test]
    fn store_settings() {
        let s = LocalStore::from_setting("auto").unwrap();
        assert_eq!(s.url, "local");
        assert_eq!(s.real_store_dir, PathBuf::from("/nix/store"));
        let s = LocalStore::from_setting("/srv/x").unwrap();
        assert_eq!(s.real_store_dir, PathBuf::from("/srv/x/nix/store"));
        assert_eq!(s.state_dir, PathBuf::from("/srv/x/nix/var/nix"));
        let s = LocalStore::from_setting("local?root=/r&x=y").unwrap();
        assert_eq!(s.real_store_dir, PathBuf::from("/r/nix/store"));
        assert!(LocalStore::from_setting("s3://bucket").is_err());
    }

    #[test]
    fn real_path_refuses_escapes() {
        let s = LocalStore::from_setting("auto").unwrap();
        assert!(s.real_path("/nix/store/abc-x").is_ok());
        assert!(s.real_path("/nix/store/../etc").is_err());
        assert!(s.real_path("/nix/store/a/b").is_err());
        assert!(s.real_path("/etc/passwd").is_err());
    }
}
