//! One accepted build, from the submitted job to registered outputs (the outputs' part in
//! `build/outputs.rs`).

mod outputs;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use nsh_wire::agent_protocol::{AgentMsg, BuildRequest, BuildResult, ClientMsg, LEASE};
use nsh_wire::derivation::Derivation;

use crate::agent_channel::AgentChannel;
use crate::agent_deploy::{self, AgentBinary};
use crate::config::Config;
use crate::job_script::JobFiles;
use crate::local_store::LocalStore;
use crate::nix_log::{ACT_UNKNOWN, LVL_TALKATIVE, Ui};
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
}

/// nsh's copy of the build log so far: how much of it arrived (a reconnect resumes there)
/// and its last lines (for the error message of a failed build).
#[derive(Default)]
struct LogCopy {
    received: u64,
    tail: VecDeque<String>,
}

/// How a build failed, for the hook's exit status (Nix: 100 permanent, 101 timed out).
pub struct Failure {
    pub exit_code: i32,
    pub error: anyhow::Error,
}

impl Failure {
    fn misc(error: anyhow::Error) -> Failure {
        Failure {
            exit_code: 1,
            error,
        }
    }
}

const LOG_TAIL_LINES: usize = 25;

/// How long the wait for the job's start rides out a busy or unreachable slurmrestd.
const PATIENCE: Duration = Duration::from_secs(300);

/// How long nsh tries to reach a lost agent again.
const RECONNECT_WINDOW: Duration = nsh_wire::agent_protocol::reconnect_window(LEASE);

fn is_channel_lost(e: &anyhow::Error) -> bool {
    e.downcast_ref::<crate::agent_channel::ChannelLost>()
        .is_some()
}

impl Build<'_> {
    pub async fn run<S: Scheduler>(&self, sched: &S) -> Result<(), Failure> {
        let host = self.wait_for_start(sched).await.map_err(Failure::misc)?;
        self.ui
            .info(&format!("nsh: job {} is running on {host}", self.job));
        let in_job =
            |e: anyhow::Error| Failure::misc(e.context(format!("job {} on {host}", self.job)));
        let pool = SshPool::new(&crate::runtime_dir::runtime_dir().map_err(Failure::misc)?)
            .map_err(Failure::misc)?;
        // Held to the end of the build: every session below goes through its master.
        let mut slot = pool.slot(&host).await.map_err(in_job)?;
        let mut chan = self.connect(&mut slot, &host, true).await.map_err(in_job)?;
        let mut log = LogCopy::default();
        // A lost channel (SSH dropped, master killed) is not a lost build: the agent keeps
        // building for its lease, so reconnect and carry on where we were.
        let result = loop {
            match self.run_with_agent(&mut chan, &host, &mut log).await {
                Err(f) if is_channel_lost(&f.error) => {
                    self.ui.warn(&format!(
                        "nsh: job {} on {host}: {:#}; reconnecting",
                        self.job, f.error
                    ));
                    match self.reconnect(sched, &mut slot, &host).await {
                        Ok(c) => chan = c,
                        Err(e) => break Err(in_job(e)),
                    }
                }
                other => break other,
            }
        };
        let collect = self.config.collect_garbage;
        // Goodbye in every case: the agent removes the job's files and ends the job.
        let bye = async {
            chan.send(&ClientMsg::Goodbye {
                collect_garbage: collect,
            })
            .await?;
            chan.flush().await?;
            loop {
                match chan.recv().await? {
                    AgentMsg::Bye => return Ok::<_, anyhow::Error>(()),
                    AgentMsg::Error { message } => bail!("{message}"),
                    _ => {}
                }
            }
        };
        // After a failure the agent may be dead or stuck: don't wait long for it.
        let patience = Duration::from_secs(if result.is_ok() { 300 } else { 10 });
        let bye = tokio::time::timeout(patience, bye).await;
        if !matches!(bye, Ok(Ok(()))) {
            // The agent did not clean up after itself (killed, stuck, unreachable): remove
            // the job's files from here, so the state dir does not collect them.
            // Show the end of the job's own log first: it is the only trace of why an
            // agent died, and it goes with the directory.
            let files = &self.files;
            let ui = self.ui;
            let rm = async {
                let session = slot.session().await?;
                if result.is_err() {
                    let tail = session
                        .command("tail")
                        .args(["-n", "15", &files.log])
                        .output()
                        .await?;
                    let text = String::from_utf8_lossy(&tail.stdout);
                    if tail.status.success() && !text.trim().is_empty() {
                        ui.msg(
                            crate::nix_log::LVL_ERROR,
                            &format!(
                                "nsh: the end of job {}'s log on {host}:\n{}",
                                self.job,
                                text.trim_end()
                            ),
                        );
                    }
                }
                session
                    .command("rm")
                    .arg("-rf")
                    .arg(&files.dir)
                    .status()
                    .await?;
                Ok::<_, anyhow::Error>(())
            };
            let _ = tokio::time::timeout(Duration::from_secs(10), rm).await;
        }
        if result.is_ok() {
            match bye {
                Ok(Ok(())) => {}
                Ok(Err(e)) => self.ui.warn(&format!(
                    "nsh: job {} on {host}: cleaning up failed: {e:#}",
                    self.job
                )),
                Err(_) => self.ui.warn(&format!(
                    "nsh: job {} on {host}: the agent did not finish cleaning up in time",
                    self.job
                )),
            }
        }
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
        if first {
            let uploaded =
                agent_deploy::ensure_agent(&session, host, &self.files, &self.agent).await?;
            if uploaded > 0 {
                self.ui.info(&format!(
                    "nsh: uploaded the agent ({uploaded} bytes) to {}",
                    self.files.agent
                ));
            }
        }
        let (chan, info) = AgentChannel::open(
            session,
            host,
            &self.files.agent,
            &self.files.socket,
            &self.token,
            // First contact: the job may still be starting the agent. A reconnect finds
            // it serving already, or dead (refused): don't let a dead agent hold up the
            // loop in `reconnect`, which notices the job's end between attempts.
            if first { 60 } else { 1 },
        )
        .await
        .context("the agent did not answer")?;
        if first {
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

    /// Tries to reach the agent again until the lease would run out on its side.
    async fn reconnect<S: Scheduler>(
        &self,
        sched: &S,
        slot: &mut Slot,
        host: &str,
    ) -> Result<AgentChannel> {
        let deadline = Instant::now() + RECONNECT_WINDOW;
        let mut last = None;
        while Instant::now() < deadline {
            // An agent that died ends its job: then there is nothing to reconnect to.
            if let Ok(st) = sched.status(&self.job).await
                && !matches!(st.state, JobState::Running | JobState::Pending)
            {
                let why = if st.raw_state.contains("NODE_FAIL") {
                    format!("the scheduler lost the node {host}")
                } else {
                    format!("the agent on {host} died or was killed")
                };
                bail!(
                    "the job ended ({}{}) while the build was running: {why}",
                    st.raw_state,
                    st.exit_code
                        .map(|c| format!(", exit code {c}"))
                        .unwrap_or_default(),
                );
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
        Err(last
            .unwrap_or_else(|| anyhow!("no attempt made"))
            .context(format!(
                "could not reach the agent again within {}s",
                RECONNECT_WINDOW.as_secs()
            )))
    }

    /// Polls the scheduler until the job runs and names its host. Batch jobs start 1–3 s
    /// after submission (baselines.md), so poll often first, then settle to once a second.
    /// Transient errors (slurmrestd busy or away) are retried for [`PATIENCE`].
    async fn wait_for_start<S: Scheduler>(&self, sched: &S) -> Result<String> {
        let started = Instant::now();
        let mut last_reason = None;
        // Shown in `nix build`'s progress display while the job waits (ended on return).
        let mut waiting = None;
        loop {
            let status = match sched.status(&self.job).await {
                Ok(s) => s,
                // A busy or restarting slurmrestd is no reason to lose the build.
                Err(e) if crate::scheduler::is_transient(&e) && started.elapsed() < PATIENCE => {
                    tracing::warn!(job = %self.job, "polling: {e:#}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                Err(e) => {
                    return Err(e.context(format!("cannot get the state of job {}", self.job)));
                }
            };
            match status.state {
                JobState::Running => {
                    if let Some(host) = status.host.filter(|h| !h.is_empty()) {
                        crate::scheduler::check_host_name(&host).map_err(|why| {
                            anyhow::anyhow!(
                                "job {} runs on a host the scheduler named {why}; nothing was \
                                 sent to it (check the node names in the scheduler)",
                                self.job
                            )
                        })?;
                        return Ok(host);
                    }
                }
                JobState::Pending => {
                    if waiting.is_none() {
                        waiting = self.ui.activity(
                            LVL_TALKATIVE,
                            ACT_UNKNOWN,
                            &format!("waiting for job {} to start", self.job),
                            serde_json::json!([]),
                        );
                    }
                    if status.reason != last_reason {
                        if let Some(r) = status.reason.as_deref().filter(|r| *r != "None") {
                            self.ui.info(&format!(
                                "nsh: job {} is waiting in the queue ({r})",
                                self.job
                            ));
                        }
                        last_reason = status.reason.clone();
                    }
                }
                JobState::Finished | JobState::Failed => bail!(
                    "job {} ended ({}{}) before nsh could reach its agent; the job's log is {} \
                     on the cluster",
                    self.job,
                    status.raw_state,
                    status
                        .exit_code
                        .map(|c| format!(", exit code {c}"))
                        .unwrap_or_default(),
                    self.files.log
                ),
                JobState::Unknown => bail!(
                    "the scheduler no longer knows job {} (cancelled by someone else?)",
                    self.job
                ),
            }
            let waited = started.elapsed();
            let pause = if waited < Duration::from_secs(5) {
                Duration::from_millis(100)
            } else if waited < Duration::from_secs(30) {
                Duration::from_millis(500)
            } else {
                Duration::from_secs(2)
            };
            tokio::time::sleep(pause).await;
        }
    }

    async fn run_with_agent(
        &self,
        chan: &mut AgentChannel,
        host: &str,
        log: &mut LogCopy,
    ) -> Result<(), Failure> {
        // Inputs: the derivation's own closure (the .drv files the remote realise reads)
        // plus the closure of the input paths Nix passed.
        let mut roots = vec![self.drv_path.clone()];
        roots.extend(self.inputs.iter().cloned());
        let closure = self.store.requisites(&roots).map_err(Failure::misc)?;
        let t = Instant::now();
        let stats = transfer::upload_missing(chan, &self.store, self.ui, closure)
            .await
            .map_err(|e| Failure::misc(e.context(format!("job {} on {host}", self.job))))?;
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
            .map_err(Failure::misc)?;
        if result.status != 0 {
            return Err(self.build_failure(host, &result));
        }
        self.fetch_and_register(chan, host)
            .await
            .map_err(Failure::misc)
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
        // nix-store exits 100 + bit flags: 1 = timed out.
        let timed_out = result.status >= 100 && result.status & 1 == 1 && result.status < 128;
        Failure {
            exit_code: if timed_out { 101 } else { 100 },
            error: anyhow!(
                "build of '{}' failed in job {} on {host} (remote nix-store exit status {}): {}",
                self.drv_path,
                self.job,
                result.status,
                result.message.trim()
            ),
        }
    }
}
