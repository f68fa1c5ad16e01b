//! Slurm through its own commands: `sbatch`, `scontrol show job` and `scancel`, run on this
//! machine or on a login host ([`RunCommand`]), for clusters without slurmrestd that are
//! reached by SSH alone. Nothing is linked, so one nsh works with every Slurm from 22.05.
//!
//! ```plain
//! submit   sbatch --parsable … --export=NIL  (script on stdin)   → ID or ID;cluster
//! status   scontrol show job -o ID           (one line of Key=value)
//!          "Invalid job id specified"        → unknown (purged after MinJobAge)
//! cancel   scancel ID; again: scancel --full --signal=KILL ID
//! ```
//!
//! Parameters: `extraSlurmParams` and `slurm-extra-submission-params`, as `sbatch` options
//! ([`params`]). State words mean what they mean for every Slurm backend
//! ([`crate::scheduler::slurm_state`]).

mod errors;
pub mod params;
mod status;
mod submit;

#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::sync::Mutex;

use anyhow::{Context, Result};

use super::commands::{CommandError, CommandOutput, Invocation, RunCommand, printable};
use super::{ErrorKind, JobId, JobParams, JobSpec, JobStatus, SLURM_CPU_VARS, Scheduler};
pub use errors::Error;
pub use params::derivation_params;

/// The Slurm-commands backend over some way of running them.
pub struct SlurmCli<R: RunCommand> {
    runner: R,
    /// Jobs this process asked to cancel: a second cancel kills at once.
    cancelled: Mutex<HashSet<String>>,
}

impl<R: RunCommand> SlurmCli<R> {
    pub fn new(runner: R) -> Self {
        SlurmCli {
            runner,
            cancelled: Mutex::new(HashSet::new()),
        }
    }

    /// For `nsh check`: `sbatch --version` and `squeue` answer where the commands run.
    pub async fn probe(&self) -> Result<String> {
        let out = self
            .run(
                "sbatch",
                &["--version".to_owned()],
                None,
                "checking Slurm's commands",
            )
            .await?;
        if !out.success() {
            return Err(self.failed("sbatch", "checking its version", &out));
        }
        let version = printable(out.stdout_text().trim());
        let args = ["--noheader".to_owned(), "--jobs=1".to_owned()];
        let out = self
            .run("squeue", &args, None, "checking that slurmctld answers")
            .await?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        // An unknown job 1 is an answer from slurmctld all the same.
        if !out.success() && !status::is_unknown_job(&stderr) {
            return Err(self.failed("squeue", "checking that slurmctld answers", &out));
        }
        Ok(format!(
            "{} ({version}): sbatch and squeue answer",
            self.describe()
        ))
    }

    async fn run(
        &self,
        program: &str,
        args: &[String],
        stdin: Option<&[u8]>,
        what: &str,
    ) -> Result<CommandOutput> {
        self.runner
            .run(Invocation {
                program,
                args,
                env: &[],
                stdin,
                stdin_as_file: false,
            })
            .await
            .with_context(|| format!("{program} {}: {what}", self.runner.describe()))
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
                self.runner.describe(),
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
                 that scheduler-bin-dir or PATH lead to Slurm's own commands",
                self.runner.describe()
            ),
        }
        .into()
    }

    async fn submit_job(&self, job: &JobSpec) -> Result<JobId> {
        let JobParams::SlurmCli(options) = &job.params else {
            anyhow::bail!(
                "job '{}': the slurm-cli backend was given another scheduler's job \
                 parameters; this is a bug in nsh",
                job.name
            );
        };
        // Checked when they were made; checked again here whatever they came from.
        for word in options {
            let ok = word.starts_with("--")
                && !word.contains(' ')
                && !word.chars().any(char::is_control);
            if !ok {
                anyhow::bail!(
                    "job '{}': '{}' is not one sbatch option word; this is a bug in nsh",
                    job.name,
                    printable(word)
                );
            }
        }
        let script = super::pbs::submit::script(job)?;
        let args = submit::sbatch_args(job, options);
        let name = submit::job_name(&job.name);
        let what = format!("submitting job '{name}'");
        let out = self
            .run("sbatch", &args, Some(script.as_bytes()), &what)
            .await?;
        if !out.success() {
            return Err(self.failed("sbatch", &format!("while {what}"), &out));
        }
        let id = submit::job_id(&out.stdout_text()).map_err(|why| {
            self.bad_answer(
                "sbatch",
                &format!(
                    "job '{name}' (it may be queued anyway: look for it with squeue and \
                     scancel it by hand)"
                ),
                &why,
            )
        })?;
        Ok(JobId(id))
    }

    async fn job_status(&self, id: &JobId) -> Result<JobStatus> {
        check_id(id)?;
        let args = [
            "show".to_owned(),
            "job".to_owned(),
            "-o".to_owned(),
            id.0.clone(),
        ];
        let what = format!("while asking for job {id}");
        let out = self.run("scontrol", &args, None, &what).await?;
        if !out.success() {
            if status::is_unknown_job(&String::from_utf8_lossy(&out.stderr)) {
                return Ok(JobStatus::unknown());
            }
            return Err(self.failed("scontrol", &what, &out));
        }
        status::job_status(&out.stdout_text(), &id.0)
            .map_err(|why| self.bad_answer("scontrol show job", &format!("for job {id}"), &why))
    }

    async fn cancel_job(&self, id: &JobId) -> Result<()> {
        check_id(id)?;
        let repeat = !self
            .cancelled
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(id.0.clone());
        // A plain scancel sends SIGTERM and SIGKILL only after KillWait (30 s by default):
        // asked again (a second interrupt), the job's processes are killed at once.
        let mut args: Vec<String> = if repeat {
            vec!["--full".into(), "--signal=KILL".into()]
        } else {
            Vec::new()
        };
        args.push(id.0.clone());
        let what = format!("while cancelling job {id}");
        let out = self.run("scancel", &args, None, &what).await?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        // scancel exits 0 for ended and unknown jobs; a signal to one says "Invalid job id".
        if out.success() || status::is_unknown_job(&stderr) {
            return Ok(());
        }
        Err(self.failed("scancel", &what, &out))
    }
}

impl<R: RunCommand> Scheduler for SlurmCli<R> {
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
        let place = self.runner.describe();
        match place.strip_prefix("on ") {
            Some(rest) => format!("Slurm's commands on {rest}"),
            None => format!("Slurm's commands {place}"),
        }
    }

    fn name(&self) -> &'static str {
        "slurm"
    }

    fn cpu_count_vars(&self) -> &'static str {
        SLURM_CPU_VARS
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
            "'{}' is not a Slurm job id (digits); nothing was run for it",
            printable(&id.0)
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
    let stdout = printable(out.stdout_text().trim());
    if stdout.is_empty() {
        "(no output)".to_owned()
    } else {
        stdout
    }
}
