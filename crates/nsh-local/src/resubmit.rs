//! Builds lost to the infrastructure are not build failures: run the build in its job, and
//! when the cluster lost it (node failure, preemption, a killed agent, a channel lost past
//! the reconnect window) before any output was registered, cancel that job and submit a
//! fresh one — its own key, token, job files and reaper, avoiding the nodes already lost —
//! up to `max-resubmits` times. After that the hook exits 1 (misc failure), saying it was
//! the infrastructure, how many attempts there were and on which nodes.
//!
//! No job is left behind: the old job is cancelled before the next is submitted (if the
//! cancel fails, nothing is resubmitted and the old job's reaper cancels it when the hook
//! exits), and every job has its reaper from submission on, so a Ctrl-C during a retry
//! ends whatever job is current.

use crate::build::{Build, Failure, FailureKind};
use crate::job_script;
use crate::reaper::{self, ReaperHandle};
use crate::scheduler::{JobSpec, Scheduler};

/// One job of the build that the infrastructure lost.
struct Lost {
    host: Option<String>,
    error: anyhow::Error,
}

/// Whether a failed job deserves a fresh one: only a loss to the infrastructure, only while
/// resubmissions are left, and never once an output was registered (the build is done as
/// far as the local store knows).
pub fn should_resubmit(
    kind: FailureKind,
    resubmits_done: u32,
    max_resubmits: u32,
    outputs_registered: bool,
) -> bool {
    kind == FailureKind::Infrastructure && !outputs_registered && resubmits_done < max_resubmits
}

/// Runs `build` in its submitted job, resubmitting after losses to the infrastructure;
/// returns the hook's exit status. `spec` is the first job's request, `reaper` its reaper,
/// `slot` the queue slot (`max-queued-jobs`) every job of this build holds in turn.
pub async fn run<S: Scheduler>(
    mut build: Build<'_>,
    sched: &S,
    mut spec: JobSpec,
    mut reaper: Option<ReaperHandle>,
    slot: Option<&crate::queue_slots::Slot>,
) -> i32 {
    let ui = build.ui;
    let mut lost: Vec<Lost> = Vec::new();
    loop {
        let failure = match build.run(sched).await {
            Ok(()) => {
                if let Some(r) = reaper.take() {
                    r.release();
                }
                return 0;
            }
            Err(f) => f,
        };
        let job = build.job.clone();
        if let Err(e) = sched.cancel(&job).await {
            let how = if sched.rejects_credentials(&e) {
                "; the agent was told to stop, which ends the job (at the latest its lease \
                 does, within a minute)"
            } else {
                ""
            };
            ui.warn(&format!("nsh: cancelling job {job} failed: {e:#}{how}"));
            // Nothing is resubmitted; the reaper, dropped unreleased on return, retries
            // the cancel.
            return report(ui, failure, &lost, build.config.max_resubmits);
        }
        if let Some(r) = reaper.take() {
            r.release();
        }
        let resubmit = should_resubmit(
            failure.kind,
            build.attempt,
            build.config.max_resubmits,
            build.outputs_registered(),
        );
        // A job that never got a node (its nodes are all down) gains nothing from another.
        if !resubmit || failure.host.is_none() {
            return report(ui, failure, &lost, build.config.max_resubmits);
        }
        ui.warn(&format!(
            "nsh: {:#}; the infrastructure lost the build, not the builder: resubmitting \
             (attempt {} of {})",
            failure.error,
            build.attempt + 2,
            build.config.max_resubmits + 1
        ));
        lost.push(Lost {
            host: failure.host,
            error: failure.error,
        });
        if let Err(failure) = resubmit_job(&mut build, sched, &mut spec, &lost).await {
            return report(ui, failure, &lost, build.config.max_resubmits);
        }
        reaper = reaper::spawn_or_warn(ui, &build.job, slot);
        ui.info(&format!(
            "nsh: resubmitted {} as job {} to {}, after losing it on {}",
            build.drv_path,
            build.job,
            sched.describe(),
            spec.exclude_hosts.join(", ")
        ));
    }
}

/// Submits the build again as a fresh job (a new job dir and token in the same state dir,
/// the nodes already lost excluded) and points `build` at it.
async fn resubmit_job<S: Scheduler>(
    build: &mut Build<'_>,
    sched: &S,
    spec: &mut JobSpec,
    lost: &[Lost],
) -> Result<(), Failure> {
    let (files, token) = job_script::fresh_job(&build.files.state, &build.agent.file_name);
    spec.script = job_script::render(
        build.config,
        &files,
        &build.drv_path,
        &token,
        sched.cpu_count_vars(),
    );
    spec.exclude_hosts = lost_hosts(lost);
    let job = sched.submit(spec).await.map_err(|e| Failure {
        kind: FailureKind::Infrastructure,
        error: e.context(format!(
            "cannot resubmit {} to {} (avoiding {})",
            build.drv_path,
            sched.describe(),
            spec.exclude_hosts.join(", ")
        )),
        host: None,
    })?;
    build.phases.mark("resubmit");
    build.job = job;
    build.files = files;
    build.token = token;
    build.attempt += 1;
    Ok(())
}

/// The nodes where earlier jobs were lost, each once, in order.
fn lost_hosts(lost: &[Lost]) -> Vec<String> {
    let mut hosts: Vec<String> = Vec::new();
    for h in lost.iter().filter_map(|l| l.host.clone()) {
        if !hosts.contains(&h) {
            hosts.push(h);
        }
    }
    hosts
}

/// Prints the final failure; returns the hook's exit status. After earlier losses the
/// message lists every attempt, so the user sees it was the cluster each time.
fn report(ui: &crate::nix_log::Ui, failure: Failure, lost: &[Lost], max: u32) -> i32 {
    let code = failure.exit_code();
    if lost.is_empty() && failure.kind != FailureKind::Infrastructure {
        ui.error(&format!("nsh: {:#}", failure.error));
        return code;
    }
    ui.error(&give_up_message(&failure, lost, max));
    code
}

fn give_up_message(failure: &Failure, lost: &[Lost], max: u32) -> String {
    let attempts = lost.len() + 1;
    let mut hosts = lost_hosts(lost);
    if let Some(h) = &failure.host
        && !hosts.contains(h)
    {
        hosts.push(h.clone());
    }
    let nodes = if hosts.is_empty() {
        "no node".to_owned()
    } else {
        hosts.join(", ")
    };
    let mut text = if failure.kind == FailureKind::Infrastructure {
        format!(
            "nsh: the cluster's infrastructure lost this build, not the builder: {attempts} \
             attempt(s) on {nodes} (max-resubmits = {max}); rerun when the nodes are healthy"
        )
    } else {
        format!("nsh: {attempts} attempt(s) on {nodes}; the last one failed otherwise")
    };
    // Each error names its job and node already.
    for l in lost {
        text.push_str(&format!("\n  {:#}", l.error));
    }
    text.push_str(&format!("\n  last: {:#}", failure.error));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resubmits_only_infrastructure_losses() {
        use FailureKind::*;
        assert!(should_resubmit(Infrastructure, 0, 2, false));
        assert!(should_resubmit(Infrastructure, 1, 2, false));
        assert!(!should_resubmit(Infrastructure, 2, 2, false));
        assert!(!should_resubmit(Infrastructure, 0, 0, false), "0 = never");
        assert!(
            !should_resubmit(Infrastructure, 0, 2, true),
            "outputs came back"
        );
        for kind in [BuilderFailed, TimedOut, Other] {
            assert!(!should_resubmit(kind, 0, 2, false), "{kind:?}");
        }
    }

    fn lost(job: &str, host: Option<&str>) -> Lost {
        Lost {
            host: host.map(str::to_owned),
            error: anyhow::anyhow!("lost {job}"),
        }
    }

    #[test]
    fn hosts_once_in_order() {
        let l = [
            lost("1", Some("node2")),
            lost("2", None),
            lost("3", Some("node1")),
            lost("4", Some("node2")),
        ];
        assert_eq!(lost_hosts(&l), ["node2", "node1"]);
    }

    #[test]
    fn giving_up_says_infrastructure_attempts_and_nodes() {
        let failure = Failure {
            kind: FailureKind::Infrastructure,
            error: anyhow::anyhow!("job 3 waited"),
            host: Some("node2".into()),
        };
        let text = give_up_message(&failure, &[lost("1", Some("node1"))], 2);
        assert!(text.contains("infrastructure lost this build"), "{text}");
        assert!(text.contains("2 attempt(s) on node1, node2"), "{text}");
        assert!(text.contains("\n  lost 1\n"), "{text}");
        assert!(text.contains("last: job 3 waited"), "{text}");
        assert_eq!(failure.exit_code(), 1);
    }
}
