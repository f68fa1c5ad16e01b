//! The end of a job, successful or not: `Goodbye`, or the job's files removed from here.

use std::time::Duration;

use anyhow::bail;
use nsh_wire::agent_protocol::{AgentMsg, ClientMsg};

use super::{Build, token_note};
use crate::agent_channel::AgentChannel;
use crate::nix_log::LVL_DEBUG;
use crate::scheduler::Scheduler;
use crate::ssh::Slot;

impl Build<'_> {
    /// After the build, successful or not: `Goodbye` (the agent removes the job's files and
    /// ends the job; on success its answer brings the agent's timings), or, if the agent
    /// does not answer, the files removed from here. Where credentials expire, the
    /// end-of-build check of the token runs meanwhile.
    pub(super) async fn end_job<S: Scheduler>(
        &self,
        sched: &S,
        chan: &mut AgentChannel,
        slot: &Slot,
        host: &str,
        note: &token_note::TokenNote,
        ok: bool,
    ) {
        let collect = self.config.collect_garbage;
        let bye = async {
            chan.send(&ClientMsg::Goodbye {
                collect_garbage: collect,
            })
            .await?;
            chan.flush().await?;
            loop {
                match chan.recv().await? {
                    AgentMsg::Bye { timings } => {
                        self.phases.mark("goodbye");
                        self.phases.agent(chan.hello_sent, timings);
                        return Ok::<_, anyhow::Error>(());
                    }
                    AgentMsg::Error { message } => bail!("{message}"),
                    _ => {}
                }
            }
        };
        // After a failure the agent may be dead or stuck: don't wait long for it.
        let patience = Duration::from_secs(if ok { 300 } else { 10 });
        let token_check = async {
            if ok && sched.credentials_expire() {
                note.after_build(sched, self.ui, self.config, &self.job)
                    .await;
            }
        };
        let (bye, ()) = tokio::join!(tokio::time::timeout(patience, bye), token_check);
        if !matches!(bye, Ok(Ok(()))) {
            self.remove_job_files(slot, host, ok).await;
        }
        let timing = self.phases.report(&self.job.0);
        tracing::debug!("{timing}");
        self.ui.msg(LVL_DEBUG, &timing);
        if ok {
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
    }

    /// The agent did not clean up after itself (killed, stuck, unreachable): remove the
    /// job's files from here, so the state dir does not collect them. After a failure, show
    /// the end of the job's own log first: it is the only trace of why an agent died, and
    /// it goes with the directory.
    async fn remove_job_files(&self, slot: &Slot, host: &str, ok: bool) {
        let files = &self.files;
        let ui = self.ui;
        let rm = async {
            let session = slot.session().await?;
            if !ok {
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
}
