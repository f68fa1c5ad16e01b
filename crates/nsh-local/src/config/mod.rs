//! `nsh.conf`: nix.conf syntax, Nix's lookup order, every setting with its default.
//!
//! Each setting is defined once, in [`settings::SETTINGS`]: its name, aliases, whether it is
//! a list (takes `extra-`), its README default and doc, and how its value is parsed into
//! [`Config`]. The loader, the unknown-key error with its "did you mean", the `extra-` check
//! and the README's settings table (checked by a unit test) all read that list.
//!
//! - [`loader`]: the nix.conf grammar, includes, applying [`Source`]s in order;
//! - [`env`]: where the files are looked for ([`ConfigEnv`]);
//! - [`values`]: the value parsers the definitions share;
//! - [`validate`]: what can only be checked once every source is read;
//! - [`errors`]: [`ConfigError`] and how values are quoted without leaking the token;
//! - [`tls`]: the CA bundle of `slurm-api-ca-file`, loopback hosts.
//!
//! The JWT (`slurm-jwt-token`) is a [`Secret`]: it never appears in an error, a warning or
//! `Debug` output.

mod env;
mod errors;
mod loader;
mod permissions;
mod settings;
mod suggest;
mod tls;
mod validate;
mod values;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

pub use env::{ConfigEnv, Source};
pub use errors::ConfigError;
pub use loader::load_from;
pub use tls::{is_loopback_host, read_ca_file};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobScheduler {
    Slurm,
    SlurmNative,
    /// Slurm through its own commands (`sbatch`, `squeue`, `scontrol`, `scancel`), here or
    /// on `login-host`: an nsh extension.
    SlurmCli,
    Pbs,
}

impl JobScheduler {
    /// The spelling used in `nsh.conf`.
    pub fn as_str(self) -> &'static str {
        match self {
            JobScheduler::Slurm => "slurm",
            JobScheduler::SlurmNative => "slurm-native",
            JobScheduler::SlurmCli => "slurm-cli",
            JobScheduler::Pbs => "pbs",
        }
    }

    fn parse(value: &str) -> Option<Self> {
        match value {
            "slurm" => Some(JobScheduler::Slurm),
            "slurm-native" => Some(JobScheduler::SlurmNative),
            "slurm-cli" => Some(JobScheduler::SlurmCli),
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

/// `slurm-api-scheme`: how nsh talks to slurmrestd. HTTPS is an nsh extension.
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

/// What nsh prints instead of a secret (a token in a config error, a `Debug` of one, a
/// token a server echoed back).
pub const REDACTED: &str = "<redacted>";

/// A value that must never be printed: `Debug` shows [`REDACTED`], and there is no `Display`.
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
        f.write_str(REDACTED)
    }
}

/// All settings of `nsh.conf`, with defaults applied. Each field's meaning is the doc of
/// its entry in [`settings::SETTINGS`] (and the README's settings table).
#[derive(Debug, Clone)]
pub struct Config {
    pub job_scheduler: JobScheduler,
    pub system: String,
    pub system_features: Vec<String>,
    pub mandatory_system_features: Vec<String>,
    pub store_dir: String,
    /// `remote-store`: the `--store` URL of the remote Nix; `None` = `auto` (no `--store`).
    pub remote_store: Option<String>,
    pub remote_nix_bin_dir: Option<String>,
    pub collect_garbage: bool,
    /// `max-queued-jobs`: at most this many of this host's nsh jobs alive at once (pending
    /// or running), counted across hook processes; beyond it nsh answers `# postpone`.
    /// 0 = no cap.
    pub max_queued_jobs: u32,
    /// `max-resubmits`: how often a build lost to the infrastructure (node failure,
    /// preemption, a killed agent) is submitted again as a fresh job; 0 = never.
    pub max_resubmits: u32,
    /// `state-dir` (alias `slurm-state-dir`): where nsh keeps its files on the cluster;
    /// required by every scheduler ([`Config::validate`]).
    pub state_dir: Option<String>,
    /// `login-host`: the host (name or ssh config alias) on which `qsub`, `qstat` and
    /// `qdel` run over SSH; `None` = on this machine. Not used by `slurm` (REST).
    pub login_host: Option<String>,
    /// `scheduler-bin-dir`: the directory holding `qsub`, `qstat` and `qdel` (on the login
    /// host if one is set); `None` = found on `PATH`.
    pub scheduler_bin_dir: Option<String>,
    pub slurm_api_host: String,
    pub slurm_api_port: u16,
    /// `slurm-api-scheme`: `http` (the default, as the reference tool) or `https`.
    pub slurm_api_scheme: ApiScheme,
    /// `slurm-api-ca-file`: a PEM bundle; when set, the only CAs trusted for slurmrestd.
    pub slurm_api_ca_file: Option<PathBuf>,
    /// `slurm-api-version`: force a REST API version (`v0.0.42`, always in that canonical
    /// spelling); `None` = negotiate.
    pub slurm_api_version: Option<String>,
    pub slurm_jwt_token: Option<Secret>,
    pub slurm_extra_submission_params: serde_json::Map<String, serde_json::Value>,
    /// `allowed-job-params`: the keys a derivation's scheduler attribute may set; `None` =
    /// the backend's default (see `scheduler::job_params`).
    pub allowed_job_params: Option<Vec<String>>,
    /// `extra-allowed-job-params`: added to the above (or to the default).
    pub extra_allowed_job_params: Vec<String>,
    /// `slurm-conf`: the `slurm.conf` libslurm reads (`slurm-native`); `None` = Slurm's own
    /// lookup (`SLURM_CONF`, then its built-in path).
    pub slurm_conf: Option<PathBuf>,
    /// `slurm-library`: the libslurm `slurm-native` loads; `None` = the dynamic linker's
    /// search.
    pub slurm_library: Option<PathBuf>,
    /// `job-user`: the user jobs run as when the hook runs as root and submits from this
    /// machine (`slurm-native`, `slurm-cli` and `pbs` without `login-host`).
    pub job_user: Option<String>,
    /// `allow-root-jobs`: a root hook with no `job-user` may submit jobs that run as root.
    pub allow_root_jobs: bool,
    /// `pbs-host`: the PBS server; `None` = the server and port of `pbs.conf`.
    pub pbs_host: Option<String>,
    /// `pbs-port`: the PBS server's port, used only with `pbs-host`.
    pub pbs_port: u16,
    /// Where each setting came from, for error messages: setting name (never an alias) →
    /// `path:line`, or the origin of a text source (`NSH_CONFIG`).
    pub origins: BTreeMap<String, String>,
    /// Files (and text sources) that were read, in the order they were applied.
    pub files_read: Vec<String>,
    /// Files that were looked for but do not exist.
    pub files_missing: Vec<String>,
    /// Problems that are not errors (e.g. a token in a world-readable file); the caller prints them.
    pub warnings: Vec<String>,
}

impl Default for Config {
    /// Every setting at its default; nothing read.
    fn default() -> Self {
        Config {
            job_scheduler: JobScheduler::Slurm,
            system: "x86_64-linux".into(),
            system_features: vec!["nsh".into()],
            mandatory_system_features: Vec::new(),
            store_dir: "/nix/store".into(),
            remote_store: None,
            remote_nix_bin_dir: None,
            collect_garbage: false,
            max_queued_jobs: 0,
            max_resubmits: 2,
            state_dir: None,
            login_host: None,
            scheduler_bin_dir: None,
            job_user: None,
            allow_root_jobs: false,
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
            slurm_library: None,
            pbs_host: None,
            pbs_port: 15001,
            origins: BTreeMap::new(),
            files_read: Vec::new(),
            files_missing: Vec::new(),
            warnings: Vec::new(),
        }
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

#[cfg(test)]
mod tests;
