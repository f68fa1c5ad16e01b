//! One accepted build, from the submitted job to registered outputs (the outputs' part in
//! `build/outputs.rs`, how it failed in `build/failure.rs`). One run is one job; a fresh
//! job after a lost one is `resubmit.rs`'s.

mod end;
mod failure;
mod outputs;
mod queue_wait;
mod token_note;

pub use failure::{Failure, FailureKind};

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use nsh_wire::agent_protocol::{AgentMsg, BuildRequest, BuildResult, ClientMsg, LEASE};
use nsh_wire::derivation::Derivation;

use crate::agent_channel::{AgentChannel, AgentMissing, Connect};
use crate::agent_deploy::{self, AgentBinary};
use crate::config::Config;
use crate::job_script::JobFiles;
use crate::local_store::LocalStore;
use crate::nix_log::Ui;
use crate::phases::{self, Phases};
use crate::scheduler::{JobId, JobState, Scheduler};
use crate::ssh::{Slot, SshPool};
use crate::transfer;

/// Everything one build needs, gathered before the job was submitted.
pub struct Build<'a> {
    pub ui: &'a Ui,
    pub config: &'a Config,
    pub store: LocalStore,
    pub nix_settings: &'a BTreeMap<String, String>,
    pub drv_path: String,
    pub drv: Derivation,
    pub inputs: Vec<String>,
    pub wanted_outputs: Vec<String>,
    pub job: JobId,
    pub files: JobFiles,
    pub token: String,
    pub agent: AgentBinary,
    /// 0 for the first job, n for the n-th resubmission.
    pub attempt: u32,
    /// Set once outputs were registered locally: from then on the build is not redone.
    pub registered: AtomicBool,
    /// Where the time goes (shown at Nix's debug level).
    pub phases: Phases,
}

/// What the build needs from the local store, read while the job waits (`read_local`).
struct Local {
    inputs: transfer::Inputs,
    outputs_valid: BTreeSet<String>,
}

/// nsh's copy of the build log so far: how much of it arrived (a reconnect resumes there)
/// and its last lines (for the error message of a failed build).
#[derive(Default)]
struct LogCopy {
    received: u64,
    tail: VecDeque<String>,
}

const LOG_TAIL_LINES: usize = 25;

/// How long the wait for the job's start rides out a busy or unreachable slurmrestd.
const PATIENCE: Duration = Duration::from_secs(300);

/// How long a resubmitted job may stay pending once the scheduler said it waits on nodes
/// that are down or unavailable: the first job waits as long as the queue takes, but a
/// resubmission whose nodes are gone would otherwise wait for an admin. Not reset by a
/// later reason: Slurm alternates `ReqNodeNotAvail` and `Resources` for such a job.
const RESUBMIT_NODES_WAIT: Duration = Duration::from_secs(60);

/// How long nsh tries to reach a lost agent again.
const RECONNECT_WINDOW: Duration = nsh_wire::agent_protocol::reconnect_window(LEASE);

fn is_channel_lost(e: &anyhow::Error) -> bool {
    e.downcast_ref::<crate::agent_channel::ChannelLost>()
        .is_some()
}

impl Build<'_> {
    pub async fn run<S: Scheduler>(&self, sched: &S) -> Result<(), Failure> {
        // The local store's part is read while the job waits in the queue.
        let (host, local) = tokio::join!(self.wait_for_start(sched), self.read_local());
        let host = host?;
        self.phases.mark(phases::START_SEEN);
        let local = local.map_err(Failure::other)?;
        self.ui
            .info(&format!("nsh: job {} is running on {host}", self.job));
        let pool = SshPool::new(&crate::runtime_dir::runtime_dir().map_err(Failure::other)?)
            .map_err(Failure::other)?;
        // Held to the end of the build: every session below goes through its master.
        let mut slot = pool
            .slot(&host)
            .await
            .map_err(|e| Failure::other(e.context(format!("job {} on {host}", self.job))))?;
        let mut chan = match self.connect(&mut slot, &host, true).await {
            Ok(c) => c,
            Err(e) => return Err(self.first_contact_failed(sched, &host, e).await),
        };
        let mut log = LogCopy::default();
        let note = token_note::TokenNote::default();
        // A lost channel (SSH dropped, master killed) is not a lost build: the agent keeps
        // building for its lease, so reconnect and carry on where we were.
        let result = loop {
            match self
                .run_with_agent(&mut chan, &host, &local, &mut log)
                .await
            {
                Err(f) if is_channel_lost(&f.error) => {
                    self.ui.warn(&format!(
                        "nsh: job {} on {host}: {:#}; reconnecting",
                        self.job, f.error
                    ));
                    match self.reconnect(sched, &mut slot, &host, &note).await {
                        Ok(c) => chan = c,
                        Err(f) => break Err(f),
                    }
                }
                other => break other.map_err(|f| f.on_host(&host)),
            }
        };
        self.end_job(sched, &mut chan, &slot, &host, &note, result.is_ok())
            .await;
        result
    }

    /// [`Self::connect_once`], moved to another master while the slot's master refuses
    /// sessions (a site's MaxSessions below sshd's default); `move_if_refused` ends the
    /// loop with an error after a few masters.
    async fn connect(&self, slot: &mut Slot, host: &str, first: bool) -> Result<AgentChannel> {
        loop {
            let err = match self.connect_once(slot, host, first).await {
                Ok(chan) => return Ok(chan),
                Err(e) => e,
            };
            if !slot.move_if_refused(&err).await? {
                return Err(err);
            }
            self.ui.warn(&format!(
                "nsh: job {}: {host} refused an SSH session ({err:#}); trying SSH \
                 connection {} instead",
                self.job,
                slot.master()
            ));
        }
    }

    /// SSH to the host, the agent binary in place, a channel to the agent.
    async fn connect_once(&self, slot: &Slot, host: &str, first: bool) -> Result<AgentChannel> {
        let session = Arc::new(slot.session().await?);
        // First contact: the job may still be starting the agent. A reconnect finds it
        // serving already, or dead (refused): don't let a dead agent hold up the loop in
        // `reconnect`, which notices the job's end between attempts.
        let how = if first {
            self.phases.mark("ssh ready");
            // The state dir checked and the agent looked for in the same command.
            Connect::Checked {
                agent_file: &self.agent.file_name,
                wait_secs: 60,
            }
        } else {
            Connect::Agent { wait_secs: 1 }
        };
        let opened =
            AgentChannel::open(Arc::clone(&session), host, &self.files, how, &self.token).await;
        let (chan, info) = match opened {
            Err(e) if e.is::<AgentMissing>() => {
                let uploaded =
                    agent_deploy::upload(&session, host, &self.files, &self.agent).await?;
                self.ui.info(&format!(
                    "nsh: uploaded the agent ({uploaded} bytes) to {}",
                    self.files.agent
                ));
                let how = Connect::Agent { wait_secs: 60 };
                AgentChannel::open(session, host, &self.files, how, &self.token).await
            }
            other => other,
        }
        .context("the agent did not answer")?;
        if first {
            self.phases.mark("agent ready");
            self.ui.info(&format!(
                "nsh: agent on {} ready (Nix {}, store {})",
                info.hostname,
                info.nix_version
                    .trim()
                    .trim_start_matches("nix-store (Nix) "),
                info.store
            ));
        }
        Ok(chan)
    }

    /// The first connection to the agent failed. An agent that refused (it cannot run the
    /// node's Nix) or SSH trouble with a job still running is a setup problem; a job that
    /// ended meanwhile says itself what happened.
    async fn first_contact_failed<S: Scheduler>(
        &self,
        sched: &S,
        host: &str,
        e: anyhow::Error,
    ) -> Failure {
        if let Some(refused) = e.downcast_ref::<crate::agent_channel::AgentRefused>() {
            let hint = match &self.config.remote_nix_bin_dir {
                Some(dir) => format!(
                    "; check remote-nix-bin-dir = {dir} in nsh.conf: its Nix must run on {host}"
                ),
                None => String::new(),
            };
            return Failure::other(anyhow!(
                "job {} on {host}: {refused}{hint} (not resubmitted: a fresh job would fail \
                 the same way)",
                self.job
            ))
            .on_host(host);
        }
        if let Ok(st) = sched.status(&self.job).await
            && !matches!(st.state, JobState::Running | JobState::Pending)
        {
            let ended = failure::job_ended(&self.job, Some(host), &st, false);
            return Failure {
                error: ended.error.context(format!("{e:#}")),
                ..ended
            };
        }
        let error = e.context(format!("job {} on {host}", self.job));
        // A resubmission follows a loss to the infrastructure: a node that cannot be reached
        // now is most likely one the scheduler has not yet marked down (22.05 cannot
        // exclude nodes). A wrong guess costs at most max-resubmits more jobs.
        if self.attempt > 0 {
            return Failure::infrastructure(error, host);
        }
        Failure::other(error).on_host(host)
    }

    /// Tries to reach the agent again until the lease would run out on its side.
    async fn reconnect<S: Scheduler>(
        &self,
        sched: &S,
        slot: &mut Slot,
        host: &str,
        note: &token_note::TokenNote,
    ) -> Result<AgentChannel, Failure> {
        let deadline = Instant::now() + RECONNECT_WINDOW;
        let mut last = None;
        while Instant::now() < deadline {
            // An agent that died ends its job: then there is nothing to reconnect to.
            match sched.status(&self.job).await {
                Ok(st) if !matches!(st.state, JobState::Running | JobState::Pending) => {
                    return Err(failure::job_ended(&self.job, Some(host), &st, true));
                }
                Ok(_) => {}
                Err(e) => note.poll_failed(
                    self.ui,
                    self.config,
                    &self.job,
                    sched.rejects_credentials(&e),
                ),
            }
            match tokio::time::timeout(Duration::from_secs(20), self.connect(slot, host, false))
                .await
            {
                Ok(Ok(chan)) => {
                    self.ui
                        .info(&format!("nsh: job {}: reconnected to {host}", self.job));
                    return Ok(chan);
                }
                Ok(Err(e)) => last = Some(e),
                Err(_) => last = Some(anyhow!("connecting timed out")),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let error = last
            .unwrap_or_else(|| anyhow!("no attempt made"))
            .context(format!(
                "job {} on {host}: could not reach the agent again within {}s",
                self.job,
                RECONNECT_WINDOW.as_secs()
            ));
        Err(Failure::infrastructure(error, host))
    }

    async fn run_with_agent(
        &self,
        chan: &mut AgentChannel,
        host: &str,
        local: &Local,
        log: &mut LogCopy,
    ) -> Result<(), Failure> {
        let t = Instant::now();
        let stats =
            transfer::upload_missing(chan, &self.store, self.ui, &self.phases, &local.inputs)
                .await
                .map_err(|e| Failure::other(e.context(format!("job {} on {host}", self.job))))?;
        self.ui.info(&format!(
            "nsh: sent {} of {} paths ({} bytes, {} compressed) to {host} in {:.2}s",
            stats.missing,
            stats.closure,
            stats.raw_bytes,
            stats.sent_bytes,
            t.elapsed().as_secs_f64()
        ));

        let result = self
            .remote_build(chan, host, log)
            .await
            .map_err(Failure::other)?;
        if result.status != 0 {
            return Err(self.build_failure(host, &result));
        }
        self.fetch_and_register(chan, host, &local.outputs_valid)
            .await
            .map_err(Failure::other)
    }

    /// The `.drv`'s output paths (those it names: a floating output has none), sorted.
    fn output_paths(&self) -> Vec<String> {
        let paths: BTreeSet<String> = self
            .drv
            .outputs
            .values()
            .map(|o| o.path.clone())
            .filter(|p| !p.is_empty())
            .collect();
        paths.into_iter().collect()
    }

    /// Whether any output of this build was registered locally (then it is never redone).
    pub fn outputs_registered(&self) -> bool {
        self.registered.load(Ordering::SeqCst)
    }

    fn build_options(&self) -> Vec<(String, String)> {
        let mut options = Vec::new();
        for name in ["max-silent-time", "timeout"] {
            if let Some(v) = self.nix_settings.get(name) {
                options.push((name.to_string(), v.clone()));
            }
        }
        let substitute = self
            .nix_settings
            .get("builders-use-substitutes")
            .map(|v| v == "true")
            .unwrap_or(false);
        options.push(("substitute".into(), substitute.to_string()));
        // The remote Nix must accept the features the derivation requires (`nsh` among them).
        let mut features: BTreeSet<String> = self.config.system_features.iter().cloned().collect();
        features.extend(self.drv.required_system_features());
        options.push((
            "system-features".into(),
            features.into_iter().collect::<Vec<_>>().join(" "),
        ));
        options
    }

    async fn remote_build(
        &self,
        chan: &mut AgentChannel,
        host: &str,
        log: &mut LogCopy,
    ) -> Result<BuildResult> {
        chan.send(&ClientMsg::Build(BuildRequest {
            drv_path: self.drv_path.clone(),
            outputs: self.wanted_outputs.clone(),
            options: self.build_options(),
            cores: crate::nix_cores::user_cores(
                self.nix_settings.get("cores").map(String::as_str),
                &crate::nix_cores::machine_defaults(),
            ),
            keep_failed: self
                .nix_settings
                .get("keep-failed")
                .is_some_and(|v| v == "true"),
            log_offset: log.received,
        }))
        .await?;
        chan.flush().await?;
        let tail = &mut log.tail;
        loop {
            let msg = chan.recv().await?;
            match msg {
                AgentMsg::Log(bytes) => {
                    log.received += bytes.len() as u64;
                    self.ui.build_log(&bytes);
                    for line in String::from_utf8_lossy(&bytes).lines() {
                        if tail.len() == LOG_TAIL_LINES {
                            tail.pop_front();
                        }
                        tail.push_back(line.to_string());
                    }
                }
                AgentMsg::LogGap { bytes } => {
                    log.received += bytes;
                    self.ui.build_log(
                        format!(
                            "[nsh: {bytes} bytes of the build log were lost: nsh was \
                             disconnected from {host} longer than the agent keeps the log]\n"
                        )
                        .as_bytes(),
                    );
                }
                AgentMsg::BuildDone(mut result) => {
                    self.phases.mark("realise");
                    if let Some(dir) = &result.kept_dir {
                        self.ui
                            .warn(&failure::kept_dir_message(host, dir, &self.files.state));
                    }
                    if result.status != 0 && !tail.is_empty() {
                        result.message = format!(
                            "{}\nlast {} log lines:\n{}",
                            result.message.trim_end(),
                            tail.len(),
                            tail.iter()
                                .map(|l| format!("> {l}"))
                                .collect::<Vec<_>>()
                                .join("\n")
                        );
                    }
                    return Ok(result);
                }
                AgentMsg::Error { message } => {
                    bail!("job {} on {host}: the agent failed: {message}", self.job)
                }
                other => bail!("unexpected message from the agent on {host}: {other:?}"),
            }
        }
    }

    fn build_failure(&self, host: &str, result: &BuildResult) -> Failure {
        let kind = failure::realise_failure_kind(result.status);
        let (what, why) = if kind == FailureKind::TimedOut {
            ("timed out", "Nix's timeout or max-silent-time")
        } else {
            ("failed", "the builder failed")
        };
        Failure {
            kind,
            error: anyhow!(
                "build of '{}' {what} in job {} on {host}: {why} (remote nix-store exit status \
                 {}): {}",
                self.drv_path,
                self.job,
                result.status,
                result.message.trim()
            ),
            host: Some(host.to_owned()),
        }
    }
}
