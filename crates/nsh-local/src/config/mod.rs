//! `nsh.conf`: nix.conf syntax, Nix's lookup order, every setting of the spec with its default.
//!
//! Grammar (mirrors `applyConfigInner` in Nix's `src/libutil/configuration.cc`):
//!
//! ```plain
//! file    = { line "\n" }
//! line    = [ content ] [ "#" comment ]
//! content = key "=" { word }          value = the words joined by single spaces
//!         | "include" path            a missing file is an error
//!         | "!include" path           a missing file is skipped
//! ```
//!
//! A line is split into tokens on space, tab and CR; the second token must be exactly `=`, so
//! `key=value` is an error, as in Nix. `extra-KEY = …` appends to a list setting. Relative
//! include paths resolve against the including file's directory (against the working directory
//! for `NSH_CONFIG`); includes nest at most [`MAX_INCLUDE_DEPTH`] deep.
//!
//! Lookup order, last wins (Nix's `loadConfFile`): `$NIX_CONF_DIR/nsh.conf`, then the user files
//! of [`ConfigEnv::user_files`] applied in reverse (the first one listed wins), then the text of
//! `NSH_CONFIG`. Unlike Nix, an unknown setting is an error, not a warning.
//!
//! The JWT (`slurm-jwt-token`) is a [`Secret`]: it never appears in an error, a warning or
//! `Debug` output.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::scheduler::job_params;

/// Include nesting limit; stops include cycles long before the stack is at risk.
pub const MAX_INCLUDE_DEPTH: usize = 16;

/// Longest excerpt of a value quoted in an error message, in characters.
const MAX_EXCERPT: usize = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobScheduler {
    Slurm,
    SlurmNative,
    Pbs,
}

impl JobScheduler {
    /// The spelling used in `nsh.conf`.
    pub fn as_str(self) -> &'static str {
        match self {
            JobScheduler::Slurm => "slurm",
            JobScheduler::SlurmNative => "slurm-native",
            JobScheduler::Pbs => "pbs",
        }
    }

    fn parse(value: &str) -> Option<Self> {
        match value {
            "slurm" => Some(JobScheduler::Slurm),
            "slurm-native" => Some(JobScheduler::SlurmNative),
            "pbs" => Some(JobScheduler::Pbs),
            _ => None,
        }
    }
}

impl fmt::Display for JobScheduler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `slurm-api-scheme`: how nsh talks to slurmrestd. HTTPS is an nsh extension (spec §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiScheme {
    Http,
    Https,
}

impl ApiScheme {
    /// The spelling used in `nsh.conf` and in URLs.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiScheme::Http => "http",
            ApiScheme::Https => "https",
        }
    }

    fn parse(value: &str) -> Option<Self> {
        match value {
            "http" => Some(ApiScheme::Http),
            "https" => Some(ApiScheme::Https),
            _ => None,
        }
    }
}

impl fmt::Display for ApiScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A value that must never be printed: `Debug` shows `<redacted>`, and there is no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    #[cfg(test)]
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that sends it (the `X-SLURM-USER-TOKEN` header).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// All settings of `nsh.conf` (spec §2), with defaults applied.
#[derive(Debug, Clone)]
pub struct Config {
    pub job_scheduler: JobScheduler,
    pub system: String,
    pub system_features: Vec<String>,
    pub mandatory_system_features: Vec<String>,
    pub store_dir: String,
    pub remote_store: String,
    pub remote_nix_bin_dir: Option<String>,
    pub collect_garbage: bool,
    /// `max-queued-jobs`: at most this many of this host's nsh jobs alive at once (pending
    /// or running), counted across hook processes; beyond it nsh answers `# postpone`.
    /// 0 = no cap.
    pub max_queued_jobs: u32,
    /// `max-resubmits`: how often a build lost to the infrastructure (node failure,
    /// preemption, a killed agent) is submitted again as a fresh job; 0 = never.
    pub max_resubmits: u32,
    pub slurm_state_dir: Option<String>,
    pub slurm_api_host: String,
    pub slurm_api_port: u16,
    /// `slurm-api-scheme`: `http` (the default, as the reference tool) or `https`.
    pub slurm_api_scheme: ApiScheme,
    /// `slurm-api-ca-file`: a PEM bundle; when set, the only CAs trusted for slurmrestd.
    pub slurm_api_ca_file: Option<PathBuf>,
    /// `slurm-api-version`: force a REST API version (`v0.0.42`); `None` = negotiate.
    pub slurm_api_version: Option<String>,
    pub slurm_jwt_token: Option<Secret>,
    pub slurm_extra_submission_params: serde_json::Map<String, serde_json::Value>,
    /// `allowed-job-params`: the keys a derivation's scheduler attribute may set; `None` =
    /// the backend's default (see `scheduler::job_params`).
    pub allowed_job_params: Option<Vec<String>>,
    /// `extra-allowed-job-params`: added to the above (or to the default).
    pub extra_allowed_job_params: Vec<String>,
    pub slurm_conf: Option<PathBuf>,
    pub pbs_host: Option<String>,
    pub pbs_port: u16,
    /// Where each setting came from, for error messages: setting name → `path:line`, or the
    /// origin of a text source (`NSH_CONFIG`).
    pub origins: BTreeMap<String, String>,
    /// Files (and text sources) that were read, in the order they were applied.
    pub files_read: Vec<String>,
    /// Files that were looked for but do not exist.
    pub files_missing: Vec<String>,
    /// Problems that are not errors (e.g. a token in a world-readable file); the caller prints them.
    pub warnings: Vec<String>,
}

impl Default for Config {
    /// Every setting at its spec default; nothing read.
    fn default() -> Self {
        Config {
            job_scheduler: JobScheduler::Slurm,
            system: "x86_64-linux".into(),
            system_features: vec!["nsh".into()],
            mandatory_system_features: Vec::new(),
            store_dir: "/nix/store".into(),
            remote_store: "auto".into(),
            remote_nix_bin_dir: None,
            collect_garbage: false,
            max_queued_jobs: 0,
            max_resubmits: 2,
            slurm_state_dir: None,
            slurm_api_host: "localhost".into(),
            slurm_api_port: 6820,
            slurm_api_scheme: ApiScheme::Http,
            slurm_api_ca_file: None,
            slurm_api_version: None,
            slurm_jwt_token: None,
            slurm_extra_submission_params: serde_json::Map::new(),
            allowed_job_params: None,
            extra_allowed_job_params: Vec::new(),
            slurm_conf: None,
            pbs_host: None,
            pbs_port: 15001,
            origins: BTreeMap::new(),
            files_read: Vec::new(),
            files_missing: Vec::new(),
            warnings: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("nsh.conf: cannot read {path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "nsh.conf: {at}: included file {path} not found (use '!include' to skip a missing file)"
    )]
    IncludeNotFound { at: String, path: String },
    #[error(
        "nsh.conf: {at}: includes nest more than {MAX_INCLUDE_DEPTH} deep at {path} (is there an include cycle?)"
    )]
    IncludeTooDeep { at: String, path: String },
    #[error("nsh.conf: {at}: {problem}")]
    Syntax { at: String, problem: String },
    #[error("nsh.conf: {at}: unknown setting '{key}'{hint}")]
    UnknownSetting {
        at: String,
        key: String,
        /// ` (did you mean '…'?)` or empty.
        hint: String,
    },
    #[error(
        "nsh.conf: {at}: '{key}' cannot take the 'extra-' prefix; only list settings can (system-features, mandatory-system-features, allowed-job-params)"
    )]
    NotAppendable { at: String, key: String },
    /// `value` is already quoted and cut to a short excerpt, or `<redacted>` for the token.
    #[error("nsh.conf: {at}: bad value {value} for '{key}': expected {expected}")]
    BadValue {
        at: String,
        key: String,
        value: String,
        expected: String,
    },
    #[error("nsh.conf: '{key}' is required when job-scheduler = {scheduler}; {hint} ({files})")]
    Missing {
        key: String,
        /// The scheduler and where it was chosen, e.g. `slurm (the default)`.
        scheduler: String,
        hint: String,
        /// Which files were read (or looked for, if none was found).
        files: String,
    },
    #[error("nsh.conf: bad value for '{key}': expected {expected}")]
    Invalid { key: String, expected: String },
    /// `slurm-api-ca-file` names a file that cannot serve as the CA bundle.
    #[error(
        "nsh.conf: {at}: slurm-api-ca-file = {path}: {problem}; set it to a PEM file holding the \
         CA certificate(s) that signed slurmrestd's (or its TLS proxy's) certificate"
    )]
    CaFile {
        at: String,
        path: String,
        problem: String,
    },
    /// A CA file with plain HTTP: the user meant TLS, so refuse rather than send the token
    /// in clear text while they believe it is protected.
    #[error(
        "nsh.conf: {at}: slurm-api-ca-file is set but slurm-api-scheme is http ({scheme_at}), \
         so the CA would never be used and the token would cross the network unencrypted; \
         set slurm-api-scheme = https, or remove slurm-api-ca-file"
    )]
    CaFileWithoutTls { at: String, scheme_at: String },
}

/// One place settings come from, applied in order by [`load_from`].
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

/// Reads the configuration the process environment points at, then [`Config::validate`]s it.
pub fn load() -> Result<Config, ConfigError> {
    load_with(&ConfigEnv::from_process())
}

/// [`load`] with an explicit environment.
pub fn load_with(env: &ConfigEnv) -> Result<Config, ConfigError> {
    let config = load_from(&env.sources())?;
    config.validate()?;
    Ok(config)
}

/// Applies `sources` in order over the defaults. Does not check required settings (see
/// [`Config::validate`]); does fill `warnings`.
pub fn load_from(sources: &[Source]) -> Result<Config, ConfigError> {
    let mut loader = Loader::default();
    for source in sources {
        match source {
            Source::File { path, required } => {
                let shown = path.display().to_string();
                match read_file(path)? {
                    Some(text) => {
                        loader.config.files_read.push(shown);
                        loader.apply_text(&text, &Origin::File(path.clone()), 0)?;
                    }
                    None if *required => {
                        let source = std::io::Error::from(std::io::ErrorKind::NotFound);
                        return Err(ConfigError::Io {
                            path: shown,
                            source,
                        });
                    }
                    None => loader.config.files_missing.push(shown),
                }
            }
            Source::Text {
                text,
                origin,
                base_dir,
            } => {
                loader.config.files_read.push(origin.clone());
                let origin = Origin::Text {
                    name: origin.clone(),
                    base_dir: base_dir.clone(),
                };
                loader.apply_text(text, &origin, 0)?;
            }
        }
    }
    let mut config = loader.config;
    let mut seen = Vec::new();
    for path in loader.token_files {
        if !seen.contains(&path) {
            config.warnings.extend(warn_if_world_readable(&path));
            seen.push(path);
        }
    }
    Ok(config)
}

/// Parses one config body over the defaults, as if it were a file named `origin`
/// (relative includes resolve against the working directory). No validation.
#[cfg(test)]
pub fn parse_str(text: &str, origin: &str) -> Result<Config, ConfigError> {
    load_from(&[Source::Text {
        text: text.into(),
        origin: origin.into(),
        base_dir: None,
    }])
}

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

impl Config {
    /// Checks what can only be checked once every source is read: the settings the chosen
    /// scheduler requires. Also re-checks invariants a hand-built `Config` could break.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if check_store_dir(&self.store_dir).is_err() {
            return Err(invalid("store-dir", STORE_DIR_EXPECTED));
        }
        for (key, port) in [
            ("slurm-api-port", self.slurm_api_port),
            ("pbs-port", self.pbs_port),
        ] {
            if port == 0 {
                return Err(invalid(key, PORT_EXPECTED));
            }
        }
        self.validate_tls()?;
        let needs_state_dir = matches!(
            self.job_scheduler,
            JobScheduler::Slurm | JobScheduler::SlurmNative
        );
        if needs_state_dir && self.slurm_state_dir.is_none() {
            return Err(self.missing(
                "slurm-state-dir",
                "set it to a directory every cluster node can see, e.g. slurm-state-dir = /home/<user>/.nsh",
            ));
        }
        if self.job_scheduler == JobScheduler::Slurm && self.slurm_jwt_token.is_none() {
            return Err(self.missing(
                "slurm-jwt-token",
                "set it to a JWT that slurmrestd accepts (see 'scontrol token'), in a file only the hook's user can read (chmod 600)",
            ));
        }
        Ok(())
    }

    /// `slurm-api-ca-file` only with https, and only a file that holds usable certificates.
    fn validate_tls(&self) -> Result<(), ConfigError> {
        let Some(path) = &self.slurm_api_ca_file else {
            return Ok(());
        };
        let at = self
            .origins
            .get("slurm-api-ca-file")
            .cloned()
            .unwrap_or_else(|| "slurm-api-ca-file".into());
        if self.slurm_api_scheme == ApiScheme::Http {
            let scheme_at = match self.origins.get("slurm-api-scheme") {
                Some(origin) => format!("set at {origin}"),
                None => "the default".into(),
            };
            return Err(ConfigError::CaFileWithoutTls { at, scheme_at });
        }
        read_ca_file(path)
            .map(drop)
            .map_err(|problem| ConfigError::CaFile {
                at,
                path: path.display().to_string(),
                problem,
            })
    }

    /// True when the token would go over plain HTTP to a host that is not this machine.
    pub fn token_crosses_plain_http(&self) -> bool {
        self.slurm_api_scheme == ApiScheme::Http && !is_loopback_host(&self.slurm_api_host)
    }

    fn missing(&self, key: &str, hint: &str) -> ConfigError {
        let chosen = match self.origins.get("job-scheduler") {
            Some(at) => format!("{} (set at {at})", self.job_scheduler),
            None => format!("{} (the default)", self.job_scheduler),
        };
        let files = if self.files_read.is_empty() {
            format!(
                "no nsh.conf was found; looked for: {}",
                self.files_missing.join(", ")
            )
        } else {
            format!("read: {}", self.files_read.join(", "))
        };
        ConfigError::Missing {
            key: key.into(),
            scheduler: chosen,
            hint: hint.into(),
            files,
        }
    }
}

/// Reads a PEM CA bundle: every `CERTIFICATE` block, each checked to be usable as a trust
/// anchor. The error says what is wrong with the file (missing, unreadable, no certificate,
/// a broken one), for [`ConfigError::CaFile`] and for the HTTP client.
pub fn read_ca_file(
    path: &Path,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let bytes = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "the file does not exist".to_string(),
        std::io::ErrorKind::PermissionDenied => {
            "the file cannot be read (permission denied for this user)".to_string()
        }
        _ => format!("the file cannot be read ({e})"),
    })?;
    let mut certs = Vec::new();
    for (index, item) in CertificateDer::pem_slice_iter(&bytes).enumerate() {
        let cert = item.map_err(|e| format!("certificate {} is not valid PEM ({e})", index + 1))?;
        let mut store = rustls::RootCertStore::empty();
        store.add(cert.clone()).map_err(|e| {
            format!(
                "certificate {} is not a usable X.509 CA certificate ({e})",
                index + 1
            )
        })?;
        certs.push(cert);
    }
    if certs.is_empty() {
        return Err(
            "the file holds no certificate (no '-----BEGIN CERTIFICATE-----' block)".into(),
        );
    }
    Ok(certs)
}

/// Whether `host` (a `slurm-api-host` value) is this machine: `localhost`, 127.0.0.0/8 or
/// `::1` (also bracketed, or IPv4-mapped). Any other name may resolve anywhere.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_end_matches('.');
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    match bare.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(v4)) => v4.is_loopback(),
        Ok(std::net::IpAddr::V6(v6)) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Err(_) => false,
    }
}

fn invalid(key: &str, expected: &str) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        expected: expected.into(),
    }
}

/// `Ok(None)` if the file does not exist.
fn read_file(path: &Path) -> Result<Option<String>, ConfigError> {
    let io_err = |source| ConfigError::Io {
        path: path.display().to_string(),
        source,
    };
    match std::fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes).map(Some).map_err(|e| {
            io_err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                e.utf8_error(),
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(e)),
    }
}

enum Origin {
    File(PathBuf),
    Text {
        name: String,
        base_dir: Option<PathBuf>,
    },
}

impl Origin {
    fn name(&self) -> String {
        match self {
            Origin::File(path) => path.display().to_string(),
            Origin::Text { name, .. } => name.clone(),
        }
    }

    fn resolve(&self, include: &str) -> PathBuf {
        let include = Path::new(include);
        let base = match self {
            Origin::File(path) => path.parent().map(Path::to_path_buf),
            Origin::Text { base_dir, .. } => base_dir.clone(),
        };
        match base {
            Some(base) if include.is_relative() => base.join(include),
            _ => include.to_path_buf(),
        }
    }
}

/// Where a setting was made: `at` for messages, `origin` for [`Config::origins`].
struct Loc {
    at: String,
    origin: String,
    file: Option<PathBuf>,
}

#[derive(Default)]
struct Loader {
    config: Config,
    /// Files that set `slurm-jwt-token`, checked for permissions at the end.
    token_files: Vec<PathBuf>,
}

impl Loader {
    fn apply_text(&mut self, text: &str, origin: &Origin, depth: usize) -> Result<(), ConfigError> {
        let name = origin.name();
        for (index, raw) in text.split('\n').enumerate() {
            let line = raw.split('#').next().unwrap_or_default();
            let tokens: Vec<&str> = line
                .split([' ', '\t', '\r'])
                .filter(|t| !t.is_empty())
                .collect();
            let Some(&first) = tokens.first() else {
                continue;
            };
            let at = format!("{name}:{}", index + 1);
            if first == "include" || first == "!include" {
                let [_, include] = tokens[..] else {
                    let problem = format!(
                        "expected '{first} PATH' with a single path, found {}",
                        describe_line(line)
                    );
                    return Err(ConfigError::Syntax { at, problem });
                };
                let path = origin.resolve(include);
                let shown = path.display().to_string();
                if depth + 1 > MAX_INCLUDE_DEPTH {
                    return Err(ConfigError::IncludeTooDeep { at, path: shown });
                }
                match read_file(&path)? {
                    Some(text) => {
                        self.config.files_read.push(shown);
                        self.apply_text(&text, &Origin::File(path), depth + 1)?;
                    }
                    None if first == "!include" => self.config.files_missing.push(shown),
                    None => return Err(ConfigError::IncludeNotFound { at, path: shown }),
                }
                continue;
            }
            if tokens.get(1) != Some(&"=") {
                let problem = if line.contains('=') {
                    format!(
                        "expected 'key = value' with spaces around '=', found {}",
                        describe_line(line)
                    )
                } else {
                    format!(
                        "expected 'key = value', 'include PATH' or '!include PATH', found {}",
                        describe_line(line)
                    )
                };
                return Err(ConfigError::Syntax { at, problem });
            }
            let value = tokens.get(2..).unwrap_or_default().join(" ");
            let origin_str = match origin {
                Origin::File(_) => at.clone(),
                Origin::Text { name, .. } => name.clone(),
            };
            let file = match origin {
                Origin::File(path) => Some(path.clone()),
                Origin::Text { .. } => None,
            };
            self.set(
                first,
                &value,
                &Loc {
                    at,
                    origin: origin_str,
                    file,
                },
            )?;
        }
        Ok(())
    }

    fn set(&mut self, key: &str, value: &str, loc: &Loc) -> Result<(), ConfigError> {
        let (name, append) = match key.strip_prefix("extra-") {
            Some(rest) if SETTINGS.contains(&rest) => (rest, true),
            _ => (key, false),
        };
        if !SETTINGS.contains(&name) {
            return Err(ConfigError::UnknownSetting {
                at: loc.at.clone(),
                key: show_key(key),
                hint: suggest(key)
                    .map(|s| format!(" (did you mean '{s}'?)"))
                    .unwrap_or_default(),
            });
        }
        if append && !LIST_SETTINGS.contains(&name) {
            return Err(ConfigError::NotAppendable {
                at: loc.at.clone(),
                key: key.into(),
            });
        }
        let bad = |expected: &str| ConfigError::BadValue {
            at: loc.at.clone(),
            key: key.into(),
            value: excerpt(value),
            expected: expected.into(),
        };
        let c = &mut self.config;
        match name {
            "job-scheduler" => {
                c.job_scheduler = JobScheduler::parse(value)
                    .ok_or_else(|| bad("one of slurm, slurm-native, pbs"))?;
            }
            "system" => {
                if value.is_empty() || value.contains(' ') || !value.contains('-') {
                    return Err(bad(
                        "a Nix system type such as x86_64-linux or aarch64-linux",
                    ));
                }
                c.system = value.into();
            }
            "system-features" | "mandatory-system-features" => {
                let list = if name == "system-features" {
                    &mut c.system_features
                } else {
                    &mut c.mandatory_system_features
                };
                if !append {
                    list.clear();
                }
                for word in value.split(' ').filter(|w| !w.is_empty()) {
                    if !list.iter().any(|f| f == word) {
                        list.push(word.into());
                    }
                }
            }
            "store-dir" => {
                check_store_dir(value).map_err(|()| bad(STORE_DIR_EXPECTED))?;
                c.store_dir = value.into();
            }
            "remote-store" => {
                let relative_path =
                    !value.contains("://") && !value.starts_with('/') && value.contains('/');
                if value.is_empty()
                    || value.contains(' ')
                    || relative_path
                    || value.starts_with('~')
                {
                    return Err(bad(
                        "a Nix store URL: auto, daemon, local, unix://…, ssh-ng://… or an absolute path such as /local/store",
                    ));
                }
                c.remote_store = value.into();
            }
            "remote-nix-bin-dir" => {
                c.remote_nix_bin_dir = optional_abs_dir(value)
                    .map_err(|()| bad("an absolute directory holding nix-store on the cluster, e.g. /shared/nix/bin"))?;
            }
            "collect-garbage" => {
                c.collect_garbage = match value {
                    "true" | "yes" | "1" => true,
                    "false" | "no" | "0" => false,
                    _ => return Err(bad("true or false")),
                };
            }
            "max-queued-jobs" => {
                c.max_queued_jobs = value.parse().map_err(|_| {
                    bad("a number of jobs, e.g. 100 (0 = no cap); keep it below the site's per-user job limit")
                })?;
            }
            "max-resubmits" => {
                c.max_resubmits = value
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n <= MAX_RESUBMITS_LIMIT)
                    .ok_or_else(|| bad(MAX_RESUBMITS_EXPECTED))?;
            }
            "slurm-state-dir" => {
                let expected = if value.starts_with('~') {
                    "an absolute path ('~' is not expanded), e.g. /home/<user>/.nsh"
                } else {
                    "an absolute path without spaces that every cluster node can see, e.g. /home/<user>/.nsh"
                };
                c.slurm_state_dir = optional_abs_dir(value).map_err(|()| bad(expected))?;
            }
            "slurm-api-host" => {
                let host_port = value.matches(':').count() == 1;
                if value.is_empty() || value.contains([' ', '/']) || host_port {
                    return Err(bad(
                        "a host name or IP address without 'http://' or ':port' (set the port with slurm-api-port, https with slurm-api-scheme)",
                    ));
                }
                c.slurm_api_host = value.into();
            }
            "slurm-api-port" => {
                c.slurm_api_port = parse_port(value).ok_or_else(|| bad(PORT_EXPECTED))?
            }
            "pbs-port" => c.pbs_port = parse_port(value).ok_or_else(|| bad(PORT_EXPECTED))?,
            "slurm-api-scheme" => {
                c.slurm_api_scheme = ApiScheme::parse(value)
                    .ok_or_else(|| bad("http or https (https needs TLS in front of slurmrestd)"))?;
            }
            "slurm-api-ca-file" => {
                c.slurm_api_ca_file = optional_abs_dir(value)
                    .map_err(|()| {
                        bad("an absolute path to a PEM file with the CA certificate(s) for slurmrestd, or nothing for the built-in roots")
                    })?
                    .map(PathBuf::from);
            }
            "slurm-api-version" => {
                c.slurm_api_version = match value {
                    "" => None,
                    v if is_api_version(v) => Some(v.into()),
                    _ => {
                        return Err(bad(
                            "a slurmrestd API version such as v0.0.42, or nothing to negotiate one",
                        ));
                    }
                };
            }
            "slurm-jwt-token" => {
                if !value.chars().all(|ch| ch.is_ascii_graphic()) {
                    return Err(ConfigError::BadValue {
                        at: loc.at.clone(),
                        key: key.into(),
                        value: "<redacted>".into(),
                        expected: "a single JWT without spaces or non-ASCII characters".into(),
                    });
                }
                c.slurm_jwt_token = (!value.is_empty()).then(|| Secret(value.into()));
                self.token_files.extend(loc.file.clone());
            }
            "slurm-extra-submission-params" => {
                let params = parse_json_object(value).map_err(|why| {
                    bad(&format!(
                        "a JSON object such as {{\"partition\": \"debug\"}} ({why})"
                    ))
                })?;
                if let Some(key) = job_params::reserved_in(params.keys().map(String::as_str)) {
                    return Err(bad(&format!(
                        "a JSON object without `{key}`: nsh sets that job field itself, and \
                         its own value always wins"
                    )));
                }
                c.slurm_extra_submission_params = params;
            }
            "allowed-job-params" => {
                let words: Vec<String> = value
                    .split(' ')
                    .filter(|w| !w.is_empty())
                    .map(str::to_owned)
                    .collect();
                if let Some(w) = words.iter().find(|w| !job_params::is_param_name(w)) {
                    return Err(bad(&format!(
                        "job parameter names (letters, digits, '_', '.', '-'); {} is not one",
                        excerpt(w)
                    )));
                }
                if let Some(key) = job_params::reserved_in(words.iter().map(String::as_str)) {
                    return Err(bad(&format!(
                        "job parameter names for resources and placement; `{key}` is a job \
                         field nsh sets itself and no derivation may set"
                    )));
                }
                if append {
                    for w in words {
                        if !c.extra_allowed_job_params.contains(&w) {
                            c.extra_allowed_job_params.push(w);
                        }
                    }
                } else {
                    c.allowed_job_params = Some(words);
                    c.extra_allowed_job_params.clear();
                }
            }
            "slurm-conf" => {
                c.slurm_conf = optional_abs_dir(value)
                    .map_err(|()| bad("an absolute path to slurm.conf"))?
                    .map(PathBuf::from);
            }
            "pbs-host" => {
                if value.contains([' ', '/']) {
                    return Err(bad("the PBS server's host name (PBS_SERVER in pbs.conf)"));
                }
                c.pbs_host = (!value.is_empty()).then(|| value.into());
            }
            _ => {
                // SETTINGS and this match list the same names; an unhandled name is a bug
                // here, reported as unknown rather than a panic.
                return Err(ConfigError::UnknownSetting {
                    at: loc.at.clone(),
                    key: show_key(key),
                    hint: String::new(),
                });
            }
        }
        self.config.origins.insert(name.into(), loc.origin.clone());
        Ok(())
    }
}

/// Every setting name, in spec order.
pub const SETTINGS: &[&str] = &[
    "job-scheduler",
    "system",
    "system-features",
    "mandatory-system-features",
    "store-dir",
    "remote-store",
    "remote-nix-bin-dir",
    "collect-garbage",
    "max-queued-jobs",
    "max-resubmits",
    "slurm-state-dir",
    "slurm-api-host",
    "slurm-api-port",
    "slurm-api-scheme",
    "slurm-api-ca-file",
    "slurm-api-version",
    "slurm-jwt-token",
    "slurm-extra-submission-params",
    "allowed-job-params",
    "slurm-conf",
    "pbs-host",
    "pbs-port",
];

/// The settings that take `extra-`.
const LIST_SETTINGS: &[&str] = &[
    "system-features",
    "mandatory-system-features",
    "allowed-job-params",
];

/// More resubmits than this would only hide a broken cluster behind a long wait.
const MAX_RESUBMITS_LIMIT: u32 = 20;
const MAX_RESUBMITS_EXPECTED: &str =
    "a whole number from 0 (never resubmit) to 20, e.g. max-resubmits = 2";
const PORT_EXPECTED: &str = "a TCP port number from 1 to 65535";
const STORE_DIR_EXPECTED: &str =
    "an absolute path without a trailing slash, spaces, '.' or '..' components, e.g. /nix/store";

fn check_store_dir(value: &str) -> Result<(), ()> {
    let ok = value.starts_with('/')
        && value.len() > 1
        && !value.contains(' ')
        && value
            .split('/')
            .skip(1)
            .all(|part| !matches!(part, "" | "." | ".."));
    if ok { Ok(()) } else { Err(()) }
}

/// Empty → `None`; otherwise an absolute path without spaces, trailing slashes removed.
fn optional_abs_dir(value: &str) -> Result<Option<String>, ()> {
    if value.is_empty() {
        return Ok(None);
    }
    if !value.starts_with('/') || value.contains(' ') {
        return Err(());
    }
    let trimmed = value.trim_end_matches('/');
    Ok(Some(if trimmed.is_empty() {
        "/".into()
    } else {
        trimmed.into()
    }))
}

fn parse_port(value: &str) -> Option<u16> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse::<u16>().ok().filter(|&p| p != 0)
}

/// `v0.0.N` with one to three digits.
fn is_api_version(value: &str) -> bool {
    value
        .strip_prefix("v0.0.")
        .is_some_and(|n| (1..=3).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_digit()))
}

fn parse_json_object(value: &str) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    if value.is_empty() {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_str::<serde_json::Value>(value) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(serde_json::Value::Array(_)) => Err("got a JSON array".into()),
        Ok(serde_json::Value::String(_)) => Err("got a JSON string".into()),
        Ok(serde_json::Value::Number(_)) => Err("got a JSON number".into()),
        Ok(serde_json::Value::Bool(_)) => Err("got a JSON boolean".into()),
        Ok(serde_json::Value::Null) => Err("got JSON null".into()),
        Err(e) => Err(format!("invalid JSON: {e}")),
    }
}

/// `'value'`, cut to [`MAX_EXCERPT`] characters, control characters shown as `?`.
fn excerpt(value: &str) -> String {
    let clean = |ch: char| if ch.is_control() { '?' } else { ch };
    if value.chars().count() <= MAX_EXCERPT {
        format!("'{}'", value.chars().map(clean).collect::<String>())
    } else {
        let cut: String = value.chars().take(MAX_EXCERPT - 3).map(clean).collect();
        format!("'{cut}...'")
    }
}

/// True if a line might hold the JWT, so it must not be echoed.
fn may_hold_secret(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    lower.contains("jwt") || lower.contains("token") || text.contains("eyJ")
}

/// A malformed line for an error message, without risking the token.
fn describe_line(line: &str) -> String {
    let line = line.trim_matches([' ', '\t', '\r']);
    if !may_hold_secret(line) {
        return excerpt(line);
    }
    let key = line.split(['=', ' ', '\t']).next().unwrap_or_default();
    if key.is_empty() || key.contains("eyJ") {
        "a line that is not shown because it may hold a secret".into()
    } else {
        format!(
            "a line starting with {} (the rest is not shown because it may hold a secret)",
            excerpt(key)
        )
    }
}

/// An unknown key for an error message: cut short, and hidden if it looks like a JWT.
fn show_key(key: &str) -> String {
    if key.contains("eyJ") {
        "<redacted>".into()
    } else {
        let quoted = excerpt(key);
        quoted
            .get(1..quoted.len() - 1)
            .unwrap_or_default()
            .to_owned()
    }
}

/// The closest setting name (with `extra-` if the key had it), if close enough to be a typo.
fn suggest(key: &str) -> Option<String> {
    let normalized = key.to_ascii_lowercase().replace('_', "-");
    let (prefix, bare, candidates) = match normalized.strip_prefix("extra-") {
        Some(rest) => ("extra-", rest.to_owned(), LIST_SETTINGS),
        None => ("", normalized.clone(), SETTINGS),
    };
    let (best, distance) = candidates
        .iter()
        .map(|c| (*c, edit_distance(&bare, c)))
        .min_by_key(|&(_, d)| d)?;
    let limit = if bare.chars().count() >= 10 { 3 } else { 2 };
    (distance <= limit).then(|| format!("{prefix}{best}"))
}

/// Optimal string alignment distance (Levenshtein plus adjacent transpositions).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let width = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * width];
    let idx = |i: usize, j: usize| i * width + j;
    for i in 0..=a.len() {
        d[idx(i, 0)] = i;
    }
    for j in 0..=b.len() {
        d[idx(0, j)] = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[idx(i - 1, j)] + 1)
                .min(d[idx(i, j - 1)] + 1)
                .min(d[idx(i - 1, j - 1)] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[idx(i - 2, j - 2)] + 1);
            }
            d[idx(i, j)] = best;
        }
    }
    d[idx(a.len(), b.len())]
}

#[cfg(test)]
mod tests;
