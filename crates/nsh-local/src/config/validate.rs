//! What can only be checked once every source is read: the settings the chosen scheduler
//! requires, settings that only make sense together, and settings it does not use.

use super::errors::ConfigError;
use super::tls::read_ca_file;
use super::values::{PORT_EXPECTED, STORE_DIR_EXPECTED, is_store_dir};
use super::{ApiScheme, Config, JobScheduler, settings};

impl Config {
    /// Checks what can only be checked once every source is read: the settings the chosen
    /// scheduler requires. Also re-checks invariants a hand-built `Config` could break.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !is_store_dir(&self.store_dir) {
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
        if let Some(host) = &self.login_host {
            crate::scheduler::check_host_name(host).map_err(|why| {
                invalid(
                    "login-host",
                    &format!("a host name or ssh config alias ({why})"),
                )
            })?;
        }
        self.validate_tls()?;
        if self.state_dir.is_none() {
            return Err(self.missing(
                "state-dir",
                "set it to a directory every cluster node can see, e.g. state-dir = /home/<user>/.nsh",
            ));
        }
        if self.job_scheduler == JobScheduler::Slurm && self.slurm_jwt_token.is_none() {
            return Err(self.missing(
                "slurm-jwt-token",
                "set it to a JWT that slurmrestd accepts (see 'scontrol token'), in a file only the hook's user can read (chmod 600)",
            ));
        }
        self.validate_scheduler_commands()?;
        self.validate_pbs_server()
    }

    /// `login-host` is for schedulers driven by commands; slurmrestd is reached over HTTP
    /// and libslurm talks to slurmctld itself, so a login host there would silently do
    /// nothing. `job-user` is for submitting from this machine: through a login host the
    /// ssh user decides.
    fn validate_scheduler_commands(&self) -> Result<(), ConfigError> {
        let why = match self.job_scheduler {
            JobScheduler::Slurm => {
                "it talks to slurmrestd over HTTP (slurm-api-host) and runs no scheduler \
                 commands; remove login-host, or set job-scheduler = slurm-cli"
            }
            JobScheduler::SlurmNative => {
                "libslurm talks to slurmctld from this machine and runs no commands; remove \
                 login-host, or set job-scheduler = slurm-cli to run Slurm's commands there"
            }
            JobScheduler::SlurmCli | JobScheduler::Pbs => {
                if self.login_host.is_some() && self.job_user.is_some() {
                    return Err(ConfigError::Conflict {
                        at: self.at("job-user"),
                        problem: "job-user is set together with login-host: the jobs run as \
                                  the user nsh logs in as there (User in ssh config); remove \
                                  job-user"
                            .into(),
                    });
                }
                return Ok(());
            }
        };
        if self.login_host.is_none() {
            return Ok(());
        }
        Err(ConfigError::NotUsed {
            at: self.at("login-host"),
            key: "login-host".into(),
            scheduler: self.chosen_scheduler(),
            why: why.into(),
        })
    }

    /// Without `pbs-host`, PBS clients take server and port from `pbs.conf`, so a lone
    /// `pbs-port` would be ignored.
    fn validate_pbs_server(&self) -> Result<(), ConfigError> {
        let port_set = self.origins.contains_key("pbs-port");
        if self.job_scheduler != JobScheduler::Pbs || self.pbs_host.is_some() || !port_set {
            return Ok(());
        }
        Err(ConfigError::Conflict {
            at: self.at("pbs-port"),
            problem: "pbs-port is set but pbs-host is not; without pbs-host the server and its \
                      port both come from pbs.conf and pbs-port would be ignored: set pbs-host \
                      too, or remove pbs-port"
                .into(),
        })
    }

    /// `slurm-api-ca-file` only with https, and only a file that holds usable certificates.
    fn validate_tls(&self) -> Result<(), ConfigError> {
        let Some(path) = &self.slurm_api_ca_file else {
            return Ok(());
        };
        let at = self.at("slurm-api-ca-file");
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
        self.slurm_api_scheme == ApiScheme::Http && !super::is_loopback_host(&self.slurm_api_host)
    }

    /// Where `key` was set, or the key itself for a hand-built `Config`.
    fn at(&self, key: &str) -> String {
        self.origins.get(key).cloned().unwrap_or_else(|| key.into())
    }

    /// The scheduler and where it was chosen, e.g. `slurm (the default)`.
    fn chosen_scheduler(&self) -> String {
        match self.origins.get("job-scheduler") {
            Some(at) => format!("{} (set at {at})", self.job_scheduler),
            None => format!("{} (the default)", self.job_scheduler),
        }
    }

    fn missing(&self, key: &str, hint: &str) -> ConfigError {
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
            scheduler: self.chosen_scheduler(),
            hint: hint.into(),
            files,
        }
    }
}

/// Warnings for settings the chosen scheduler ignores (allowed, so one file can serve
/// several schedulers, but worth a word): `slurm-*` other than `slurm-state-dir` with `pbs`,
/// and the command settings with the libslurm backend or (`scheduler-bin-dir`) with REST.
pub(super) fn unused_settings(config: &Config) -> Vec<String> {
    let commands = |name: &str| match name {
        "login-host" => config.login_host.is_some(),
        "scheduler-bin-dir" => config.scheduler_bin_dir.is_some(),
        _ => false,
    };
    // slurmrestd's own settings (slurm-extra-submission-params is the REST job object).
    let rest = |name: &str| name.starts_with("slurm-api-") || name == "slurm-jwt-token";
    let unused = |name: &str| match config.job_scheduler {
        JobScheduler::Pbs => name.starts_with("slurm-"),
        JobScheduler::SlurmNative => commands(name) || rest(name),
        JobScheduler::SlurmCli => rest(name) || name == "slurm-conf" || name == "slurm-library",
        JobScheduler::Slurm => {
            (name == "scheduler-bin-dir" && commands(name))
                || name == "slurm-conf"
                || name == "slurm-library"
                || name == "job-user"
                || name == "allow-root-jobs"
        }
    };
    settings::SETTINGS
        .iter()
        .filter(|s| unused(s.name))
        .filter_map(|s| Some((s.name, config.origins.get(s.name)?)))
        .map(|(name, at)| {
            format!(
                "nsh.conf: warning: {at}: {name} is set but job-scheduler = {} does not use it",
                config.job_scheduler
            )
        })
        .collect()
}

fn invalid(key: &str, expected: &str) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        expected: expected.into(),
    }
}
