//! The one place a backend is chosen and built from the settings: the hook, the reaper and
//! `nsh check` all get theirs here. [`Backend`] is an enum over the implementations (as
//! openssh-rust's `Session` is over its mux implementations), so the rest of nsh is written
//! once against [`Scheduler`] and never learns which scheduler runs.

use anyhow::{Context, Result};
use nsh_wire::derivation::Derivation;

use super::commands::Commands;
use super::{
    ErrorKind, JobId, JobParams, JobSpec, JobStatus, Scheduler, job_params, job_user, pbs,
    slurm_cli, slurm_native, slurm_rest,
};
use crate::config::{Config, JobScheduler};

pub enum Backend {
    SlurmRest(slurm_rest::SlurmRest),
    SlurmNative(slurm_native::SlurmNative),
    Pbs(pbs::Pbs<Commands>),
    SlurmCli(slurm_cli::SlurmCli<Commands>),
}

/// What `nsh check` prints about a backend: `ok` lines, and `warn` lines that do not stop it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckLine {
    Ok(String),
    Warn(String),
}

impl Backend {
    /// The backend `nsh.conf` asks for, ready to submit. A REST backend reuses this host's
    /// cached version negotiation.
    pub async fn from_config(config: &Config) -> Result<Backend> {
        Self::build(config, true).await
    }

    /// For `nsh check`: built afresh (no cached negotiation, which is part of what is being
    /// checked), with the lines to print before (which show even when the backend cannot be
    /// reached) and after connecting.
    pub async fn for_check(config: &Config) -> Result<(Backend, Vec<CheckLine>)> {
        for line in preflight(config) {
            print_line(&line);
        }
        let backend = Self::build(config, false).await?;
        let lines = backend.probe(config).await?;
        Ok((backend, lines))
    }

    async fn build(config: &Config, cached: bool) -> Result<Backend> {
        match config.job_scheduler {
            JobScheduler::Slurm => {
                let token = config
                    .slurm_jwt_token
                    .as_ref()
                    .context("'slurm-jwt-token' is required when job-scheduler = slurm")?;
                let cache = if cached {
                    crate::runtime_dir::runtime_dir().ok()
                } else {
                    None
                };
                Ok(Backend::SlurmRest(
                    slurm_rest::SlurmRest::connect_cached(
                        &config.slurm_api_host,
                        config.slurm_api_port,
                        &transport(config),
                        token.expose(),
                        config.slurm_api_version.as_deref(),
                        cache.as_deref(),
                    )
                    .await?
                    .with_token_source(std::sync::Arc::new(reread_token)),
                ))
            }
            JobScheduler::Pbs => {
                let commands = Commands::new(
                    config.login_host.as_deref(),
                    config.scheduler_bin_dir.as_deref(),
                    job_user::job_user(config)?,
                )?;
                Ok(Backend::Pbs(pbs::Pbs::new(commands, pbs_server(config))))
            }
            JobScheduler::SlurmNative => Ok(Backend::SlurmNative(
                slurm_native::SlurmNative::open(
                    config.slurm_library.clone(),
                    config.slurm_conf.clone(),
                    job_user::job_user(config)?,
                )
                .await?,
            )),
            JobScheduler::SlurmCli => {
                let commands = Commands::new(
                    config.login_host.as_deref(),
                    config.scheduler_bin_dir.as_deref(),
                    job_user::job_user(config)?,
                )?;
                Ok(Backend::SlurmCli(slurm_cli::SlurmCli::new(commands)))
            }
        }
    }

    /// `nsh check`'s probes of a connected backend: credentials accepted, link protected.
    async fn probe(&self, config: &Config) -> Result<Vec<CheckLine>> {
        match self {
            Backend::SlurmRest(s) => {
                s.ping().await?;
                let mut lines = vec![CheckLine::Ok(format!(
                    "{} accepts the token (user {})",
                    s.describe(),
                    s.user().unwrap_or("?")
                ))];
                if let Some(trust) = s.transport().trust() {
                    lines.push(CheckLine::Ok(format!(
                        "link to slurmrestd is encrypted (https, certificate of {} verified \
                         against {trust})",
                        config.slurm_api_host
                    )));
                }
                Ok(lines)
            }
            Backend::SlurmNative(s) => {
                let mut lines = vec![CheckLine::Ok(format!("{} loaded", s.library()))];
                s.ping().await?;
                lines.push(CheckLine::Ok(format!(
                    "slurmctld answers libslurm and accepts this machine's credentials{}",
                    match &config.slurm_conf {
                        Some(conf) => format!(" (slurm-conf {})", conf.display()),
                        None => " (Slurm's own slurm.conf)".into(),
                    }
                )));
                lines.push(CheckLine::Ok(match job_user::job_user(config)? {
                    Some(user) => format!(
                        "jobs are submitted for job-user {} (uid {})",
                        user.name, user.uid
                    ),
                    None => format!(
                        "jobs run as this process's user (uid {})",
                        rustix::process::geteuid().as_raw()
                    ),
                }));
                Ok(lines)
            }
            Backend::Pbs(p) => {
                // Finding the dialect runs `qstat --version` where the commands run.
                p.dialect().await?;
                Ok(vec![CheckLine::Ok(format!(
                    "{}: qstat answers",
                    p.describe()
                ))])
            }
            Backend::SlurmCli(c) => Ok(vec![CheckLine::Ok(c.probe().await?)]),
        }
    }

    /// The admin's job parameters for `nsh check`'s test job (no derivation's).
    pub fn admin_params(config: &Config) -> Result<JobParams> {
        Ok(match config.job_scheduler {
            JobScheduler::Slurm => {
                JobParams::SlurmRest(config.slurm_extra_submission_params.clone())
            }
            JobScheduler::SlurmCli => {
                slurm_cli::params::with_admin_params(config, serde_json::Map::new())?
            }
            other => JobParams::none_for(other),
        })
    }
}

pub fn print_line(line: &CheckLine) {
    match line {
        CheckLine::Ok(l) => println!("ok    {l}"),
        CheckLine::Warn(l) => println!("warn  {l}"),
    }
}

impl Scheduler for Backend {
    async fn submit(&self, job: &JobSpec) -> Result<JobId> {
        match self {
            Backend::SlurmRest(s) => s.submit(job).await,
            Backend::SlurmNative(s) => s.submit(job).await,
            Backend::Pbs(p) => p.submit(job).await,
            Backend::SlurmCli(c) => c.submit(job).await,
        }
    }

    async fn status(&self, id: &JobId) -> Result<JobStatus> {
        match self {
            Backend::SlurmRest(s) => s.status(id).await,
            Backend::SlurmNative(s) => s.status(id).await,
            Backend::Pbs(p) => p.status(id).await,
            Backend::SlurmCli(c) => c.status(id).await,
        }
    }

    async fn cancel(&self, id: &JobId) -> Result<()> {
        match self {
            Backend::SlurmRest(s) => s.cancel(id).await,
            Backend::SlurmNative(s) => s.cancel(id).await,
            Backend::Pbs(p) => p.cancel(id).await,
            Backend::SlurmCli(c) => c.cancel(id).await,
        }
    }

    fn describe(&self) -> String {
        match self {
            Backend::SlurmRest(s) => s.describe(),
            Backend::SlurmNative(s) => s.describe(),
            Backend::Pbs(p) => p.describe(),
            Backend::SlurmCli(c) => c.describe(),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Backend::SlurmRest(s) => s.name(),
            Backend::SlurmNative(s) => s.name(),
            Backend::Pbs(p) => p.name(),
            Backend::SlurmCli(c) => c.name(),
        }
    }

    fn rejects_credentials(&self, e: &anyhow::Error) -> bool {
        match self {
            Backend::SlurmRest(s) => s.rejects_credentials(e),
            _ => self.error_kind(e) == ErrorKind::Auth,
        }
    }

    fn credentials_expire(&self) -> bool {
        matches!(self, Backend::SlurmRest(_))
    }

    fn take_token_renewal(&self) -> bool {
        match self {
            Backend::SlurmRest(s) => s.take_renewal(),
            _ => false,
        }
    }

    fn cpu_count_vars(&self) -> &'static str {
        match self {
            Backend::SlurmRest(s) => s.cpu_count_vars(),
            Backend::SlurmNative(s) => s.cpu_count_vars(),
            Backend::Pbs(p) => p.cpu_count_vars(),
            Backend::SlurmCli(c) => c.cpu_count_vars(),
        }
    }

    fn error_kind(&self, e: &anyhow::Error) -> ErrorKind {
        match self {
            Backend::SlurmRest(s) => s.error_kind(e),
            Backend::SlurmNative(s) => s.error_kind(e),
            Backend::Pbs(p) => p.error_kind(e),
            Backend::SlurmCli(c) => c.error_kind(e),
        }
    }
}

/// The derivation's own scheduler parameters, parsed and checked by the chosen backend
/// before the offer is accepted (nothing is submitted if they fail), with the admin's
/// settings over them.
pub fn derivation_params(config: &Config, drv: &Derivation) -> Result<JobParams> {
    match config.job_scheduler {
        JobScheduler::Slurm => slurm_rest_params(config, drv),
        JobScheduler::Pbs => pbs::derivation_params(config, drv),
        JobScheduler::SlurmNative => slurm_native::constraints::derivation_params(config, drv),
        JobScheduler::SlurmCli => slurm_cli::derivation_params(config, drv),
    }
}

/// The derivation attribute the chosen backend reads, and the keys it allows by default.
pub fn derivation_attribute(config: &Config) -> Option<(&'static str, &'static [&'static str])> {
    match config.job_scheduler {
        JobScheduler::Slurm => Some(("extraSlurmParams", job_params::SLURM_REST_ALLOWED)),
        JobScheduler::Pbs => Some(("pbsResources", job_params::PBS_ALLOWED)),
        JobScheduler::SlurmNative => Some((
            slurm_native::constraints::ATTR,
            slurm_native::constraints::KEYS,
        )),
        JobScheduler::SlurmCli => Some(("extraSlurmParams", job_params::SLURM_REST_ALLOWED)),
    }
}

fn slurm_rest_params(config: &Config, drv: &Derivation) -> Result<JobParams> {
    const ATTR: &str = "extraSlurmParams";
    let mut params = serde_json::Map::new();
    if let Some(value) = drv
        .attr_json(ATTR)
        .with_context(|| format!("bad attribute '{ATTR}'"))?
    {
        let allowed = job_params::allowed_set(config, job_params::SLURM_REST_ALLOWED);
        params = job_params::check_derivation_params(
            ATTR,
            value,
            &allowed,
            job_params::SLURM_REST_RESERVED,
        )?;
    }
    // The global setting wins over the derivation's own parameters.
    for (k, v) in &config.slurm_extra_submission_params {
        params.insert(k.clone(), v.clone());
    }
    Ok(JobParams::SlurmRest(params))
}

/// `pbs-host`, with `:pbs-port` when the port was set; `None`: pbs.conf's server.
fn pbs_server(config: &Config) -> Option<String> {
    let host = config.pbs_host.as_ref()?;
    Some(if config.origins.contains_key("pbs-port") {
        format!("{host}:{}", config.pbs_port)
    } else {
        host.clone()
    })
}

/// What `nsh check` says before it connects: whether the token crosses plain HTTP.
fn preflight(config: &Config) -> Vec<CheckLine> {
    if config.job_scheduler != JobScheduler::Slurm
        || config.slurm_api_scheme != crate::config::ApiScheme::Http
    {
        return Vec::new();
    }
    let host = &config.slurm_api_host;
    vec![if config.token_crosses_plain_http() {
        CheckLine::Warn(format!(
            "link to slurmrestd is NOT encrypted: the token (slurm-jwt-token) crosses plain \
             HTTP to {host}, which is not a loopback address, on every request; anyone on the \
             path can read and reuse it. Put a TLS proxy in front of slurmrestd and set \
             slurm-api-scheme = https (and slurm-api-ca-file)"
        ))
    } else {
        CheckLine::Ok(format!(
            "link to slurmrestd is plain HTTP to {host}, a loopback address: the token \
             stays on this machine"
        ))
    }]
}

/// `slurm-api-scheme` and `slurm-api-ca-file` as the REST client's [`slurm_rest::Transport`].
pub fn transport(config: &Config) -> slurm_rest::Transport {
    match config.slurm_api_scheme {
        crate::config::ApiScheme::Http => slurm_rest::Transport::Http,
        crate::config::ApiScheme::Https => slurm_rest::Transport::Https {
            ca_file: config.slurm_api_ca_file.clone(),
        },
    }
}

/// `slurm-jwt-token` as nsh.conf's sources say now (a site timer may have rewritten an
/// included file since this process started): the Slurm REST backend's token source.
fn reread_token() -> Result<String> {
    let config = crate::config::load().context("re-reading nsh.conf for a renewed token")?;
    let token = config
        .slurm_jwt_token
        .context("nsh.conf no longer sets 'slurm-jwt-token'")?;
    Ok(token.expose().to_string())
}
