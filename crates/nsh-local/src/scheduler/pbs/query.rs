//! `qstat` of one job, per dialect, into a [`JobStatus`]: OpenPBS with `-x` until the
//! server says it keeps no history, JSON where the version has it (text if that JSON does
//! not parse); Torque and the Slurm wrappers as text.

use std::sync::atomic::Ordering;

use anyhow::Result;

use super::{Dialect, Pbs, check_id, errors, qstat_json, qstat_text, status};
use crate::scheduler::commands::RunCommand;
use crate::scheduler::{EndReason, JobId, JobState, JobStatus};

impl<R: RunCommand> Pbs<R> {
    pub(super) async fn job_status(&self, id: &JobId) -> Result<JobStatus> {
        check_id(id)?;
        let dialect = self.dialect().await?;
        match dialect {
            Dialect::OpenPbs { json, .. } => self.openpbs_status(&dialect, id, json).await,
            Dialect::Torque { .. } | Dialect::SlurmWrappers => {
                self.text_status(&dialect, id, &["-f"]).await
            }
        }
    }

    /// OpenPBS: with `-x` unless history is known to be off, JSON where it exists (text if
    /// the JSON does not parse). Bounded: each retry changes one of the two switches.
    async fn openpbs_status(
        &self,
        dialect: &Dialect,
        id: &JobId,
        mut json: bool,
    ) -> Result<JobStatus> {
        let env = self.env(dialect)?;
        let target = self.target(dialect, &id.0)?;
        let what = format!("while reading the state of job {id}");
        for _ in 0..4 {
            let history = !self.history_off.load(Ordering::Relaxed);
            let mut args: Vec<String> = Vec::new();
            if history {
                args.push("-x".into());
            }
            args.push("-f".into());
            if json {
                args.extend(["-F".into(), "json".into()]);
            }
            args.push(target.clone());
            let out = self.run("qstat", &args, &env, None, &what).await?;
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            if errors::is_unknown_job(out.status, &stderr) {
                return Ok(JobStatus::unknown());
            }
            if !history && errors::is_finished_job(&stderr) {
                // History was turned on since: ask with -x again.
                self.history_off.store(false, Ordering::Relaxed);
                continue;
            }
            if !out.success() {
                return Err(self.failed("qstat", &what, &out));
            }
            let stdout = out.stdout_text();
            let attrs = if json {
                match qstat_json::parse(&stdout, &id.0) {
                    Ok(qstat_json::Parsed::Job(attrs)) => Some(attrs),
                    Ok(qstat_json::Parsed::NoJob) => None,
                    Err(why) => {
                        tracing::debug!("job {id}: {why}; asking qstat for text instead");
                        json = false;
                        continue;
                    }
                }
            } else {
                qstat_text::parse(&stdout, &id.0)
            };
            match attrs {
                Some(attrs) => return self.status_of(id, &attrs),
                None if history && errors::is_history_off(&stderr) => {
                    self.history_off.store(true, Ordering::Relaxed);
                }
                None => return Ok(JobStatus::unknown()),
            }
        }
        Err(self.bad_answer("qstat", &format!("job {id}"), "its answers kept changing"))
    }

    async fn text_status(
        &self,
        dialect: &Dialect,
        id: &JobId,
        flags: &[&str],
    ) -> Result<JobStatus> {
        let env = self.env(dialect)?;
        let mut args: Vec<String> = flags.iter().map(|f| (*f).to_owned()).collect();
        args.push(self.target(dialect, &id.0)?);
        let what = format!("while reading the state of job {id}");
        let out = self.run("qstat", &args, &env, None, &what).await?;
        if errors::is_unknown_job(out.status, &String::from_utf8_lossy(&out.stderr)) {
            return Ok(JobStatus::unknown());
        }
        if !out.success() {
            return Err(self.failed("qstat", &what, &out));
        }
        match qstat_text::parse(&out.stdout_text(), &id.0) {
            Some(attrs) => self.status_of(id, &attrs),
            None => Ok(JobStatus::unknown()),
        }
    }

    fn status_of(&self, id: &JobId, attrs: &status::Attrs) -> Result<JobStatus> {
        let mut status = status::job_status(attrs)
            .map_err(|why| self.bad_answer("qstat", &format!("job {id}"), &why))?;
        // A qdel that reaches the mom before the job's process has started is missed: the
        // mom kills the job only after its kill delay (~10 s), and OpenPBS 23.06 then records
        // no deletion (substate 91) but a failure (93, Exit_status 256+9) for a user's job
        // and a success (92, Exit_status 0) for root's. So a job this process deleted counts
        // as cancelled however it is said to have ended; the exit status stays as reported.
        let ended = matches!(status.state, JobState::Finished | JobState::Failed);
        if ended && self.asked_to_cancel(id) {
            status.state = JobState::Failed;
            status.end = Some(EndReason::Cancelled);
        }
        Ok(status)
    }

    fn asked_to_cancel(&self, id: &JobId) -> bool {
        self.cancelled
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .contains(&id.0)
    }
}
