//! PBS through its own commands: `qsub`, `qstat` and `qdel`, run on this machine or on a
//! login host ([`RunCommand`]). No libpbs is linked, so one nsh works with OpenPBS, PBS
//! Professional and Torque, and with Slurm's Torque-compatible wrappers.
//!
//! ```plain
//!            OpenPBS / PBS Pro              Torque               Slurm's wrappers
//! dialect    qstat --version: pbs_version   Version: …           "Unknown option"
//! submit     qsub -f … FILE                 qsub … FILE          qsub … FILE, one -l
//! status     qstat -x -f -F json ID         qstat -f ID          qstat -f ID
//!            (text -x -f before PBS Pro 14; plain -f when job history is off)
//! end        F, substate 91/92/93,          C, exit_status       C, no exit status
//!            Exit_status
//! cancel     qdel ID; again: -W force       qdel ID; again: -p   qdel ID
//! ```
//!
//! The dialect is found at the first command and kept. OpenPBS keeps no job history by
//! default; then `qstat -x` answers nothing even for a running job, so after the first
//! "not configured to maintain job history" this process asks without `-x`, and a
//! finished job simply vanishes ([`JobState::Unknown`]; the agent's own goodbye says how
//! the build ended).
//!
//! The server: `pbs-host`/`pbs-port`, else pbs.conf's. OpenPBS's clients parse
//! `host:port` only where a server is named explicitly (`@host:port` destinations, `ID@…`
//! job ids); the `PBS_SERVER` variable is compared as a plain name with job-id suffixes and
//! loses to pbs.conf's `PBS_SERVER_HOST_NAME`, so nsh sets `PBS_SERVER=host` and
//! `PBS_BATCH_SERVICE_PORT=port` for the commands and also names `@host:port` in every
//! request. Torque reads `PBS_DEFAULT=host:port`.

mod dialect;
mod errors;
mod params;
mod qstat_json;
mod qstat_text;
mod query;
mod status;
pub(super) mod submit;

#[cfg(test)]
mod openpbs_tests;
#[cfg(test)]
mod testbed_tests;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::sync::atomic::AtomicBool;
use std::sync::{Mutex, OnceLock};

use anyhow::{Context, Result};

use super::commands::{CommandError, CommandOutput, Invocation, RunCommand};
use super::{ErrorKind, JobId, JobParams, JobSpec, JobStatus, Scheduler};
pub use dialect::Dialect;
pub use errors::Error;
pub use params::derivation_params;

/// The PBS backend over some way of running its commands.
pub struct Pbs<R: RunCommand> {
    runner: R,
    /// `pbs-host[:pbs-port]`, none for pbs.conf's; an error text if the setting is unusable.
    server: Result<Option<Server>, String>,
    dialect: OnceLock<Dialect>,
    /// The server said it keeps no job history: ask without `-x`.
    history_off: AtomicBool,
    /// Jobs this process asked to cancel: a second cancel forces.
    cancelled: Mutex<HashSet<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Server {
    host: String,
    port: Option<u16>,
}

impl Server {
    fn parse(text: &str) -> Result<Server, String> {
        let (host, port) = match text.rsplit_once(':') {
            Some((host, port)) => {
                let port = port
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| {
                        format!("pbs-port '{}' is not a port number", port.escape_debug())
                    })?;
                (host, Some(port))
            }
            None => (text, None),
        };
        super::check_host_name(host).map_err(|why| format!("pbs-host {why}"))?;
        Ok(Server {
            host: host.to_owned(),
            port,
        })
    }

    /// `host` or `host:port`, as a destination.
    fn destination(&self) -> String {
        match self.port {
            Some(port) => format!("{}:{port}", self.host),
            None => self.host.clone(),
        }
    }
}

impl<R: RunCommand> Pbs<R> {
    /// `server`: `host` or `host:port` from `pbs-host`/`pbs-port`; `None`: pbs.conf's.
    pub fn new(runner: R, server: Option<String>) -> Self {
        Pbs {
            runner,
            server: server.as_deref().map(Server::parse).transpose(),
            dialect: OnceLock::new(),
            history_off: AtomicBool::new(false),
            cancelled: Mutex::new(HashSet::new()),
        }
    }

    /// The dialect of the commands, found with `qstat --version` once per process.
    pub async fn dialect(&self) -> Result<Dialect> {
        if let Some(d) = self.dialect.get() {
            return Ok(d.clone());
        }
        let args = ["--version".to_owned()];
        let out = self
            .run("qstat", &args, &[], None, "finding which PBS this is")
            .await?;
        let stdout = out.stdout_text();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let found = Dialect::detect(&stdout, &stderr).ok_or_else(|| Error {
            kind: ErrorKind::Other,
            message: format!(
                "qstat --version {} printed neither 'pbs_version = …' (OpenPBS, PBS \
                 Professional) nor 'Version: …' (Torque) nor the usage of Slurm's Torque \
                 wrappers (exit {}): {}; check that scheduler-bin-dir or PATH lead to PBS's \
                 commands",
                self.runner.describe(),
                exit_text(&out),
                output_line(&out)
            ),
        })?;
        Ok(self.dialect.get_or_init(|| found).clone())
    }

    fn server(&self) -> Result<Option<&Server>> {
        match &self.server {
            Ok(server) => Ok(server.as_ref()),
            Err(why) => Err(Error {
                kind: ErrorKind::Other,
                message: format!("{why}; fix it in nsh.conf"),
            }
            .into()),
        }
    }

    /// Variables that point the commands at the configured server.
    fn env(&self, dialect: &Dialect) -> Result<Vec<(String, String)>> {
        let Some(server) = self.server()? else {
            return Ok(Vec::new());
        };
        let mut env = Vec::new();
        match dialect {
            Dialect::OpenPbs { .. } => {
                env.push(("PBS_SERVER".to_owned(), server.host.clone()));
                if let Some(port) = server.port {
                    env.push(("PBS_BATCH_SERVICE_PORT".to_owned(), port.to_string()));
                }
            }
            Dialect::Torque { .. } => {
                env.push(("PBS_DEFAULT".to_owned(), server.destination()));
                env.push(("PBS_SERVER".to_owned(), server.destination()));
            }
            // Slurm's wrappers talk to Slurm; a PBS server means nothing to them.
            Dialect::SlurmWrappers => {}
        }
        Ok(env)
    }

    /// The explicit `@server` part (OpenPBS only), if a server is configured.
    fn destination(&self, dialect: &Dialect) -> Result<Option<String>> {
        Ok(match (dialect, self.server()?) {
            (Dialect::OpenPbs { .. }, Some(server)) => Some(server.destination()),
            _ => None,
        })
    }

    /// `ID` or `ID@server`, as qstat and qdel take it.
    fn target(&self, dialect: &Dialect, id: &str) -> Result<String> {
        Ok(match self.destination(dialect)? {
            Some(dest) => format!("{id}@{dest}"),
            None => id.to_owned(),
        })
    }

    /// Where the commands go, for messages.
    fn place(&self) -> String {
        let server = match (&self.server, self.dialect.get()) {
            // The wrappers talk to Slurm, whatever pbs-host says.
            (_, Some(Dialect::SlurmWrappers)) => return self.runner.describe(),
            (Ok(Some(s)), _) => format!("server {}", s.destination()),
            _ => "pbs.conf's server".to_owned(),
        };
        format!("{} ({server})", self.runner.describe())
    }

    async fn run(
        &self,
        program: &str,
        args: &[String],
        env: &[(String, String)],
        stdin: Option<&[u8]>,
        what: &str,
    ) -> Result<CommandOutput> {
        let out = self
            .runner
            .run(Invocation {
                program,
                args,
                env,
                stdin,
                stdin_as_file: stdin.is_some(),
            })
            .await
            .with_context(|| format!("{program} {}: {what}", self.place()))?;
        Ok(out)
    }

    /// The error for a command that ran and failed.
    fn failed(&self, program: &str, what: &str, out: &CommandOutput) -> anyhow::Error {
        let text = format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            out.stdout_text()
        );
        let kind = errors::classify(&text);
        Error {
            kind,
            message: format!(
                "{program} {} failed {what} (exit {}): {}; {}",
                self.place(),
                exit_text(out),
                output_line(out),
                errors::hint(kind)
            ),
        }
        .into()
    }

    fn bad_answer(&self, program: &str, what: &str, why: &str) -> anyhow::Error {
        Error {
            kind: ErrorKind::Other,
            message: format!(
                "{program} {} answered {what} with something nsh cannot use: {why}; check \
                 that scheduler-bin-dir or PATH lead to PBS's own commands",
                self.place()
            ),
        }
        .into()
    }

    async fn submit_job(&self, job: &JobSpec) -> Result<JobId> {
        let dialect = self.dialect().await?;
        let JobParams::Pbs(resources) = &job.params else {
            anyhow::bail!(
                "job '{}': the PBS backend was given another scheduler's job parameters; \
                 this is a bug in nsh",
                job.name
            );
        };
        for (name, value) in resources {
            params::check_pair(name, value).with_context(|| format!("job '{}'", job.name))?;
        }
        if !job.exclude_hosts.is_empty() {
            // PBS has no way to say "anywhere but these hosts" in one qsub.
            tracing::warn!(
                "job '{}': PBS cannot exclude hosts; submitting without excluding {}",
                job.name,
                job.exclude_hosts.join(", ")
            );
        }
        let name = submit::job_name(&job.name);
        let script = submit::script(job)?;
        let args = submit::qsub_args(
            &dialect,
            &name,
            resources,
            self.destination(&dialect)?.as_deref(),
        );
        let env = self.env(&dialect)?;
        let what = format!("submitting job '{name}'");
        let out = self
            .run("qsub", &args, &env, Some(script.as_bytes()), &what)
            .await?;
        if !out.success() {
            return Err(self.failed("qsub", &format!("while {what}"), &out));
        }
        let id = submit::job_id(&out.stdout_text()).map_err(|why| {
            self.bad_answer(
                "qsub",
                &format!(
                    "job '{name}' (it may be queued anyway: look for it with qstat and qdel \
                     it by hand)"
                ),
                &why,
            )
        })?;
        Ok(JobId(id))
    }

    async fn cancel_job(&self, id: &JobId) -> Result<()> {
        check_id(id)?;
        let dialect = self.dialect().await?;
        let repeat = !self
            .cancelled
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(id.0.clone());
        let target = self.target(&dialect, &id.0)?;
        let force: &[&str] = match (&dialect, repeat) {
            (Dialect::OpenPbs { .. }, true) => &["-W", "force"],
            (Dialect::Torque { .. }, true) => &["-p"],
            _ => &[],
        };
        let result = self.qdel(&dialect, id, force, &target).await;
        match result {
            // Torque's purge is for operators only: a plain qdel is what a user can do.
            Err(e)
                if !force.is_empty()
                    && matches!(dialect, Dialect::Torque { .. })
                    && self.error_kind(&e) == ErrorKind::Auth =>
            {
                self.qdel(&dialect, id, &[], &target).await
            }
            other => other,
        }
    }

    async fn qdel(
        &self,
        dialect: &Dialect,
        id: &JobId,
        flags: &[&str],
        target: &str,
    ) -> Result<()> {
        let env = self.env(dialect)?;
        let mut args: Vec<String> = flags.iter().map(|f| (*f).to_owned()).collect();
        args.push(target.to_owned());
        let what = format!("while cancelling job {id}");
        let out = self.run("qdel", &args, &env, None, &what).await?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        let gone = errors::is_unknown_job(out.status, &stderr)
            || errors::is_finished_job(&stderr)
            // The job is exiting or already ended: there is nothing left to cancel.
            || stderr.contains("Request invalid for state of job")
            // The wrappers' qdel says nothing, exit 1, for a job Slurm no longer runs.
            || (matches!(dialect, Dialect::SlurmWrappers)
                && out.status == Some(1)
                && stderr.trim().is_empty());
        if out.success() || gone {
            return Ok(());
        }
        Err(self.failed("qdel", &what, &out))
    }
}

impl<R: RunCommand> Scheduler for Pbs<R> {
    async fn submit(&self, job: &JobSpec) -> Result<JobId> {
        self.submit_job(job).await
    }

    async fn status(&self, id: &JobId) -> Result<JobStatus> {
        self.job_status(id).await
    }

    async fn cancel(&self, id: &JobId) -> Result<()> {
        self.cancel_job(id).await
    }

    fn describe(&self) -> String {
        let dialect = match self.dialect.get() {
            Some(d) => d.to_string(),
            None => "dialect not known yet".to_owned(),
        };
        format!("PBS ({dialect}), commands {}", self.place())
    }

    fn name(&self) -> &'static str {
        "pbs"
    }

    /// OpenPBS sets `NCPUS` (the chunk's ncpus), Torque `PBS_NUM_PPN` (per node); Slurm's
    /// Torque wrappers (`qsub` over `sbatch`) leave Slurm's.
    fn cpu_count_vars(&self) -> &'static str {
        "NCPUS PBS_NUM_PPN SLURM_CPUS_ON_NODE"
    }

    fn error_kind(&self, e: &anyhow::Error) -> ErrorKind {
        e.chain()
            .find_map(|c| {
                if let Some(e) = c.downcast_ref::<Error>() {
                    return Some(e.kind);
                }
                c.downcast_ref::<CommandError>().map(CommandError::kind)
            })
            .unwrap_or(ErrorKind::Other)
    }
}

/// A job id read back (from the reaper's records, say) must still look like one before it
/// reaches a command line.
fn check_id(id: &JobId) -> Result<()> {
    if submit::is_job_id(&id.0) {
        return Ok(());
    }
    Err(Error {
        kind: ErrorKind::Other,
        message: format!(
            "'{}' is not a PBS job id (digits, optionally '[]' and '.server'); nothing was \
             run for it",
            status::printable(&id.0)
        ),
    }
    .into())
}

fn exit_text(out: &CommandOutput) -> String {
    match out.status {
        Some(code) => code.to_string(),
        None => "by a signal".to_owned(),
    }
}

/// What the command said: stderr, else stdout, as one printable line.
fn output_line(out: &CommandOutput) -> String {
    let line = out.stderr_line();
    if !line.trim().is_empty() {
        return line;
    }
    let stdout = status::printable(out.stdout_text().trim());
    if stdout.is_empty() {
        "(no output)".to_owned()
    } else {
        stdout
    }
}

/// Whether a job listed as `listed` in qstat's output is the job `id` (`7` and
/// `7.server` are the same job).
fn same_job(listed: &str, id: &str) -> bool {
    let seq = |s: &str| s.split(['.', '@']).next().unwrap_or_default().to_owned();
    listed == id || seq(listed) == seq(id)
}
