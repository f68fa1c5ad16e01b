//! What Slurm's job state words mean to nsh, shared by every Slurm backend (REST, the
//! commands, libslurm): each reads its own wire form into [`Facts`], this maps them to a
//! [`JobStatus`] the same way.

use crate::scheduler::{EndReason, JobState, JobStatus};

/// Job state words, by what they mean to nsh. Anything else counts as pending.
pub const FAILED_WORDS: [&str; 9] = [
    "CANCELLED",
    "TIMEOUT",
    "NODE_FAIL",
    "PREEMPTED",
    "BOOT_FAIL",
    "DEADLINE",
    "OUT_OF_MEMORY",
    "LAUNCH_FAILED",
    "REVOKED",
];
/// Checked before the running words: `["RUNNING","CONFIGURING"]` has not started the
/// script yet (nodes still booting).
pub const PENDING_WORDS: [&str; 9] = [
    "PENDING",
    "CONFIGURING",
    "REQUEUED",
    "REQUEUE_HOLD",
    "REQUEUE_FED",
    "SPECIAL_EXIT",
    "SUSPENDED",
    "RESV_DEL_HOLD",
    "POWER_UP_NODE",
];
/// v0.0.38 reports a bare `COMPLETING` while the end is not final yet: keep polling.
pub const RUNNING_WORDS: [&str; 5] = [
    "RUNNING",
    "COMPLETING",
    "STAGE_OUT",
    "SIGNALING",
    "RESIZING",
];

/// What a Slurm backend read about one job, before interpretation. Everything is as the
/// scheduler said it; [`job_status`] filters placeholders (`(null)`, `None`, node ranges).
#[derive(Debug, Clone, Default)]
pub struct Facts<'a> {
    /// Upper-case state words: base + flags, e.g. `["RUNNING","CONFIGURING"]`.
    pub words: &'a [String],
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub batch_host: Option<&'a str>,
    pub nodes: Option<&'a str>,
    pub reason: Option<&'a str>,
}

/// Maps `facts` to a [`JobStatus`]. Empty `words` give a pending job: callers refuse a
/// record without a state before calling this.
pub fn job_status(facts: &Facts<'_>) -> JobStatus {
    let words = facts.words;
    let state = classify(words, facts.exit_code);
    let (exit_code, signal) = match state {
        JobState::Finished => (
            facts
                .exit_code
                .or(Some(0))
                .filter(|_| facts.signal.is_none()),
            facts.signal,
        ),
        JobState::Failed => (facts.exit_code, facts.signal),
        _ => (None, None),
    };
    let host = facts
        .batch_host
        .map(str::trim)
        .filter(|h| !h.is_empty() && *h != "(null)")
        .or_else(|| {
            facts
                .nodes
                .map(str::trim)
                .filter(|n| !n.is_empty() && !n.contains(['[', ',', '(']))
        })
        .map(str::to_owned);
    let reason = facts
        .reason
        .map(str::trim)
        .filter(|r| !r.is_empty() && *r != "None")
        .map(str::to_owned);
    // squeue lists these; a COMPLETING flag next to an end state (v0.0.40+) counts too.
    let listed =
        |w: &String| PENDING_WORDS.contains(&w.as_str()) || RUNNING_WORDS.contains(&w.as_str());
    let end = matches!(state, JobState::Finished | JobState::Failed).then(|| end_reason(words));
    let waits_for_nodes =
        state == JobState::Pending && reason.as_deref().is_some_and(waits_for_nodes);
    JobStatus {
        state,
        in_queue: words.iter().any(listed),
        raw_state: words.join(","),
        host,
        exit_code,
        signal,
        reason,
        end,
        waits_for_nodes,
    }
}

fn classify(words: &[String], exit_code: Option<i32>) -> JobState {
    let has = |word: &str| words.iter().any(|w| w == word);
    if FAILED_WORDS.iter().any(|w| has(w)) {
        JobState::Failed
    } else if has("COMPLETED") {
        JobState::Finished
    } else if has("FAILED") {
        // The script ran and exited non-zero; FAILED without one is Slurm failing the job.
        if exit_code.is_some_and(|c| c != 0) {
            JobState::Finished
        } else {
            JobState::Failed
        }
    } else if PENDING_WORDS.iter().any(|w| has(w)) {
        JobState::Pending
    } else if RUNNING_WORDS.iter().any(|w| has(w)) {
        JobState::Running
    } else {
        JobState::Pending
    }
}

/// How an ended job ended, from its state words (the most specific word wins: a job can be
/// `CANCELLED` *and* `NODE_FAIL`ed, which is the node's doing).
fn end_reason(words: &[String]) -> EndReason {
    let has = |word: &str| words.iter().any(|w| w == word);
    if has("NODE_FAIL") {
        EndReason::NodeFailed
    } else if has("PREEMPTED") {
        EndReason::Preempted
    } else if has("BOOT_FAIL") || has("LAUNCH_FAILED") {
        EndReason::LaunchFailed
    } else if has("TIMEOUT") || has("DEADLINE") {
        EndReason::TimeLimit
    } else if has("OUT_OF_MEMORY") {
        EndReason::OutOfMemory
    } else if has("CANCELLED") || has("REVOKED") {
        EndReason::Cancelled
    } else if has("COMPLETED") || has("FAILED") {
        EndReason::Exited
    } else {
        EndReason::Other
    }
}

/// Pending reasons that mean the nodes the job may use are down, drained or missing, not
/// busy: waiting on them may take until an admin acts.
fn waits_for_nodes(reason: &str) -> bool {
    const PREFIXES: [&str; 6] = [
        "ReqNodeNotAvail",
        "NodeDown",
        "Nodes required for job are DOWN",
        "Nodes_required_for_job_are_DOWN",
        "BadConstraints",
        "PartitionNodeLimit",
    ];
    PREFIXES.iter().any(|p| reason.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(list: &[&str]) -> Vec<String> {
        list.iter().map(|w| (*w).to_owned()).collect()
    }

    #[test]
    fn configuring_is_pending_and_completing_end_is_queued() {
        let w = words(&["RUNNING", "CONFIGURING"]);
        let s = job_status(&Facts {
            words: &w,
            ..Facts::default()
        });
        assert_eq!(s.state, JobState::Pending);
        assert!(s.in_queue);
        let w = words(&["COMPLETED", "COMPLETING"]);
        let s = job_status(&Facts {
            words: &w,
            ..Facts::default()
        });
        assert_eq!(
            (s.state, s.exit_code, s.in_queue),
            (JobState::Finished, Some(0), true)
        );
    }

    #[test]
    fn failed_with_code_is_finished_without_is_failed() {
        let w = words(&["FAILED"]);
        let s = job_status(&Facts {
            words: &w,
            exit_code: Some(3),
            ..Facts::default()
        });
        assert_eq!(
            (s.state, s.exit_code, s.end),
            (JobState::Finished, Some(3), Some(EndReason::Exited))
        );
        let s = job_status(&Facts {
            words: &w,
            exit_code: Some(0),
            ..Facts::default()
        });
        assert_eq!(s.state, JobState::Failed);
    }

    #[test]
    fn hosts_and_reasons_filtered() {
        let w = words(&["PENDING"]);
        let s = job_status(&Facts {
            words: &w,
            batch_host: Some("(null)"),
            nodes: Some("node[1-2]"),
            reason: Some("ReqNodeNotAvail, UnavailableNodes:node1"),
            ..Facts::default()
        });
        assert_eq!((s.host, s.waits_for_nodes), (None, true));
        let w = words(&["RUNNING"]);
        let s = job_status(&Facts {
            words: &w,
            nodes: Some("node2"),
            reason: Some("None"),
            ..Facts::default()
        });
        assert_eq!((s.host.as_deref(), s.reason), (Some("node2"), None));
    }
}
