//! Where `nsh.conf` is looked for, as Nix looks for `nix.conf` (`loadConfFile` and
//! `getUserConfigFiles` in Nix's `src/libstore/globals.cc`): `$NIX_CONF_DIR/nsh.conf`, then
//! the user files applied in reverse (the first one listed wins), then the text of
//! `NSH_CONFIG`; last wins.

use std::path::{Path, PathBuf};

use super::Secret;

/// One place settings come from, applied in order by [`super::load_from`].
#[derive(Debug, Clone)]
pub enum Source {
    /// A file; when `required` is false a missing file is recorded in `files_missing` and skipped.
    File { path: PathBuf, required: bool },
    /// A config body held in memory (`NSH_CONFIG`); relative includes resolve against
    /// `base_dir`, or the working directory when it is `None`.
    Text {
        text: String,
        origin: String,
        base_dir: Option<PathBuf>,
    },
}

/// The environment variables that decide where `nsh.conf` is looked for; injectable for tests.
#[derive(Debug, Clone, Default)]
pub struct ConfigEnv {
    pub nix_conf_dir: Option<String>,
    pub nsh_user_conf_files: Option<String>,
    pub xdg_config_home: Option<String>,
    pub xdg_config_dirs: Option<String>,
    pub home: Option<String>,
    /// The text of `NSH_CONFIG`; a `Secret` because it may hold the token.
    pub nsh_config: Option<Secret>,
}

impl ConfigEnv {
    pub fn from_process() -> Self {
        fn var(name: &str) -> Option<String> {
            std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
        }
        #[allow(deprecated)] // Sound on Unix: `HOME`, then the passwd entry.
        let home = var("HOME")
            .filter(|h| !h.is_empty())
            .or_else(|| std::env::home_dir().map(|h| h.to_string_lossy().into_owned()));
        ConfigEnv {
            nix_conf_dir: var("NIX_CONF_DIR"),
            nsh_user_conf_files: var("NSH_USER_CONF_FILES"),
            xdg_config_home: var("XDG_CONFIG_HOME"),
            xdg_config_dirs: var("XDG_CONFIG_DIRS"),
            home,
            nsh_config: var("NSH_CONFIG").map(Secret),
        }
    }

    /// `$NIX_CONF_DIR/nsh.conf`; an unset or empty `NIX_CONF_DIR` means `/etc/nix`.
    pub fn system_file(&self) -> PathBuf {
        let dir = self.nix_conf_dir.as_deref().filter(|d| !d.is_empty());
        Path::new(dir.unwrap_or("/etc/nix")).join("nsh.conf")
    }

    /// The user files in precedence order, first wins (Nix's `getUserConfigFiles`):
    /// `NSH_USER_CONF_FILES` split on `:` if set, else `$XDG_CONFIG_HOME/nix/nsh.conf`
    /// (default `$HOME/.config`) then `DIR/nix/nsh.conf` for each `DIR` of `$XDG_CONFIG_DIRS`
    /// (default `/etc/xdg`). An empty `XDG_CONFIG_HOME` counts as unset, as XDG says.
    pub fn user_files(&self) -> Vec<PathBuf> {
        if let Some(list) = &self.nsh_user_conf_files {
            return list
                .split(':')
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
                .collect();
        }
        let mut files = Vec::new();
        let home_config = match self.xdg_config_home.as_deref().filter(|d| !d.is_empty()) {
            Some(dir) => Some(PathBuf::from(dir)),
            None => self
                .home
                .as_deref()
                .filter(|h| !h.is_empty())
                .map(|h| Path::new(h).join(".config")),
        };
        files.extend(home_config.map(|d| d.join("nix/nsh.conf")));
        let dirs = self.xdg_config_dirs.as_deref().unwrap_or("/etc/xdg");
        files.extend(
            dirs.split(':')
                .filter(|d| !d.is_empty())
                .map(|d| Path::new(d).join("nix/nsh.conf")),
        );
        files
    }

    /// Everything to read, in application order (last wins).
    pub fn sources(&self) -> Vec<Source> {
        let mut sources = vec![Source::File {
            path: self.system_file(),
            required: false,
        }];
        for path in self.user_files().into_iter().rev() {
            sources.push(Source::File {
                path,
                required: false,
            });
        }
        if let Some(text) = &self.nsh_config {
            sources.push(Source::Text {
                text: text.expose().to_owned(),
                origin: "NSH_CONFIG".into(),
                base_dir: None,
            });
        }
        sources
    }
}
