//! Tests of nsh.conf loading: syntax, lookup order, every setting, error messages.
use super::permissions::world_readable_warning;
use super::suggest::{edit_distance, suggest};
use super::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

mod includes;
mod lookup;
mod new_settings;
mod readme;
mod required;
mod robustness;
mod syntax;
mod tls;
mod token;
mod values;

const TOKEN: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdW4iOiJ0ZXN0In0.c2VjcmV0LXNpZ25hdHVyZQ";

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("nsh-config-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    /// Writes `rel` (mode 600) and returns its path.
    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.0.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    }

    fn path(&self, rel: &str) -> String {
        self.0.join(rel).display().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn file(path: &Path) -> Source {
    Source::File {
        path: path.to_path_buf(),
        required: true,
    }
}

fn err(text: &str) -> String {
    parse_str(text, "/etc/nix/nsh.conf")
        .unwrap_err()
        .to_string()
}

fn ok(text: &str) -> Config {
    parse_str(text, "/etc/nix/nsh.conf").unwrap()
}

fn slurm_ok() -> String {
    format!("state-dir = /home/u/.nsh\nslurm-jwt-token = {TOKEN}\n")
}

fn env_in(s: &Scratch) -> ConfigEnv {
    ConfigEnv {
        nix_conf_dir: Some(s.path("etc-nix")),
        nsh_user_conf_files: None,
        xdg_config_home: None,
        xdg_config_dirs: Some(format!("{}:{}", s.path("xdg1"), s.path("xdg2"))),
        home: Some(s.path("home")),
        nsh_config: None,
    }
}
