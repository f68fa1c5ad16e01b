//! While the job waits in the queue: the scheduler polled until the job runs and names its
//! host (queue reasons reported; a resubmission whose nodes are gone given up), and the
//! local store's part of the build read meanwhile.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};

use super::{Build, Local, PATIENCE, RESUBMIT_NODES_WAIT, failure};
use super::{Failure, FailureKind};
use crate::nix_log::{ACT_UNKNOWN, LVL_TALKATIVE};
use crate::scheduler::{ErrorKind, JobState, JobStatus, Scheduler};
use crate::transfer;

/// What the queue wait keeps between polls of a pending job.
#[derive(Default)]
struct Queued {
    last_reason: Option<String>,
    nodes_gone_since: Option<Instant>,
    /// Shown in `nix build`'s progress display while the job waits (ended with the wait).
    activity: Option<crate::nix_log::Activity>,
}

impl Build<'_> {
    /// Polls the scheduler until the job runs and names its host: every 100 ms, slower
    /// only when many hooks of this host wait at once or the job waited long
    /// (`waiting_hooks.rs`).
    /// Transient errors (slurmrestd busy or away) are retried for [`PATIENCE`].
    pub(super) async fn wait_for_start<S: Scheduler>(&self, sched: &S) -> Result<String, Failure> {
        let started = Instant::now();
        let mut queued = Queued::default();
        // This hook among the host's waiting ones, who share a budget of polls; without
        // the runtime dir it polls as if alone.
        let mut waiting_here = crate::runtime_dir::runtime_dir()
            .and_then(|d| crate::waiting_hooks::Waiting::join(&d))
            .map_err(|e| tracing::debug!("not counted among the waiting hooks: {e:#}"))
            .ok();
        loop {
            let status = match sched.status(&self.job).await {
                Ok(s) => s,
                // A busy or restarting slurmrestd is no reason to lose the build.
                Err(e)
                    if sched.error_kind(&e) == ErrorKind::Transient
                        && started.elapsed() < PATIENCE =>
                {
                    tracing::warn!(job = %self.job, "polling: {e:#}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                Err(e) => {
                    return Err(Failure::other(
                        e.context(format!("cannot get the state of job {}", self.job)),
                    ));
                }
            };
            match status.state {
                JobState::Running => {
                    if let Some(host) = status.host.as_deref().filter(|h| !h.is_empty()) {
                        return self.checked_host(host);
                    }
                }
                JobState::Pending => self.note_pending(&mut queued, &status)?,
                JobState::Finished | JobState::Failed => return Err(self.ended_in_queue(&status)),
                JobState::Unknown => {
                    return Err(Failure::other(anyhow!(
                        "the scheduler no longer knows job {} (cancelled by someone else?)",
                        self.job
                    )));
                }
            }
            let waiting = waiting_here.as_mut().map_or(1, |w| w.count());
            let pause = crate::waiting_hooks::poll_pause(started.elapsed(), waiting);
            tokio::time::sleep(pause).await;
        }
    }

    /// The host the scheduler named for the running job, if it is a plain host name.
    fn checked_host(&self, host: &str) -> Result<String, Failure> {
        crate::scheduler::check_host_name(host).map_err(|why| {
            Failure::other(anyhow!(
                "job {} runs on a host the scheduler named {why}; nothing was sent to it \
                 (check the node names in the scheduler)",
                self.job
            ))
        })?;
        Ok(host.to_owned())
    }

    /// One poll of a pending job: the progress activity started, a new queue reason told,
    /// a resubmission whose nodes stay gone given up.
    fn note_pending(&self, queued: &mut Queued, status: &JobStatus) -> Result<(), Failure> {
        if queued.activity.is_none() {
            queued.activity = self.ui.activity(
                LVL_TALKATIVE,
                ACT_UNKNOWN,
                &format!("waiting for job {} to start", self.job),
                serde_json::json!([]),
            );
        }
        if status.reason != queued.last_reason {
            if let Some(r) = status.reason.as_deref() {
                self.ui.info(&format!(
                    "nsh: job {} is waiting in the queue ({r})",
                    self.job
                ));
            }
            queued.last_reason = status.reason.clone();
        }
        if self.attempt > 0 && status.waits_for_nodes {
            queued.nodes_gone_since.get_or_insert_with(Instant::now);
        }
        self.give_up_on_gone_nodes(queued.nodes_gone_since, status)
    }

    /// The job ended before it was seen running.
    fn ended_in_queue(&self, status: &JobStatus) -> Failure {
        let host = status.host.as_deref().filter(|h| !h.is_empty());
        let ended = failure::job_ended(&self.job, host, status, false);
        let log = format!("the job's log is {} on the cluster", self.files.log);
        Failure {
            error: ended.error.context(log),
            ..ended
        }
    }

    /// A resubmitted job still pending [`RESUBMIT_NODES_WAIT`] after the scheduler said
    /// its nodes are unavailable (`since`) is given up.
    fn give_up_on_gone_nodes(
        &self,
        since: Option<Instant>,
        status: &JobStatus,
    ) -> Result<(), Failure> {
        match since {
            Some(t) if t.elapsed() >= RESUBMIT_NODES_WAIT => Err(Failure {
                kind: FailureKind::Infrastructure,
                error: anyhow!(
                    "job {} still pending {}s after the scheduler said its nodes are \
                     unavailable (now: {})",
                    self.job,
                    RESUBMIT_NODES_WAIT.as_secs(),
                    status.reason.as_deref().unwrap_or("no reason given")
                ),
                host: None,
            }),
            _ => Ok(()),
        }
    }

    /// What the build needs from the local store: the inputs to offer (the derivation's
    /// own closure, the .drv files the remote realise reads, plus the closure of the input
    /// paths Nix passed) and which outputs are valid already. Off the runtime; Nix holds the
    /// outputs' locks while the hook builds, so their validity does not change meanwhile.
    pub(super) async fn read_local(&self) -> Result<Local> {
        let mut roots = vec![self.drv_path.clone()];
        roots.extend(self.inputs.iter().cloned());
        let outputs = self.output_paths();
        let store = self.store.clone();
        let local = tokio::task::spawn_blocking(move || {
            Ok::<_, anyhow::Error>(Local {
                inputs: transfer::Inputs::read(&store, &roots)?,
                outputs_valid: store.valid_subset(&outputs)?,
            })
        })
        .await
        .context("reading the local store ended abnormally")??;
        self.phases.mark("local store read");
        Ok(local)
    }
}
