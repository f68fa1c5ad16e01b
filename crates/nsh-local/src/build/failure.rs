//! How a build failed. The kind, not an exit code, is what the hook decides by: it gives
//! Nix's exit status (100 permanent, 101 timed out, 1 anything else) and tells the
//! resubmit loop (`resubmit.rs`) whether a fresh job could help.

use crate::scheduler::{EndReason, JobId, JobStatus};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The builder itself failed: Nix's permanent failure.
    BuilderFailed,
    /// Nix's `timeout` / `max-silent-time`, or the job's own time limit.
    TimedOut,
    /// The cluster lost the build, not the builder: a failed or preempted node, a killed
    /// agent, a channel lost past the reconnect window.
    Infrastructure,
    /// Setup, configuration, refusals, someone cancelling the job: retrying cannot help.
    Other,
}

impl FailureKind {
    /// The hook's exit status (Nix: 100 permanent failure, 101 timed out, others misc).
    pub fn exit_code(self) -> i32 {
        match self {
            FailureKind::BuilderFailed => 100,
            FailureKind::TimedOut => 101,
            FailureKind::Infrastructure | FailureKind::Other => 1,
        }
    }
}

pub struct Failure {
    pub kind: FailureKind,
    pub error: anyhow::Error,
    /// The node the job ran on, once the scheduler named it: a resubmission avoids it.
    pub host: Option<String>,
}

impl Failure {
    pub fn other(error: anyhow::Error) -> Failure {
        Failure {
            kind: FailureKind::Other,
            error,
            host: None,
        }
    }

    pub fn infrastructure(error: anyhow::Error, host: &str) -> Failure {
        Failure {
            kind: FailureKind::Infrastructure,
            error,
            host: Some(host.to_owned()),
        }
    }

    pub fn on_host(mut self, host: &str) -> Failure {
        self.host.get_or_insert_with(|| host.to_owned());
        self
    }

    pub fn exit_code(&self) -> i32 {
        self.kind.exit_code()
    }
}

/// A non-zero exit status of the remote `nix-store --realise`. Nix (`Worker::exitStatus`)
/// returns `0x60 | flags` (0x04 failed, 0x01 timed out, 0x02 hash mismatch, 0x08 check
/// mismatch), so 100 is a plain failure and 101, 103, …, 111 a timeout.
pub fn realise_failure_kind(status: i32) -> FailureKind {
    if (0x60..=0x6f).contains(&status) && status & 0x01 != 0 {
        FailureKind::TimedOut
    } else {
        FailureKind::BuilderFailed
    }
}

/// The job ended while nsh still needed it. `serving`: its agent had been reached (so
/// the script did not just exit at its start); an agent that dies mid-build was killed or
/// lost, which is the infrastructure's doing.
pub fn job_ended(job: &JobId, host: Option<&str>, st: &JobStatus, serving: bool) -> Failure {
    let end = st.end.unwrap_or(EndReason::Other);
    // The scheduler cannot say how it ended: PBS without job history forgets a finished job
    // at once, and Slurm's Torque wrappers show no exit status. Under a serving agent that
    // is the agent dying with its job, as for a script that exited.
    let untold = st.state == crate::scheduler::JobState::Unknown
        || (end == EndReason::Other && st.exit_code.is_none() && st.signal.is_none());
    let kind = match end {
        e if e.is_infrastructure() => FailureKind::Infrastructure,
        EndReason::Exited if serving => FailureKind::Infrastructure,
        _ if untold && serving => FailureKind::Infrastructure,
        EndReason::TimeLimit => FailureKind::TimedOut,
        _ => FailureKind::Other,
    };
    let code = st
        .exit_code
        .map(|c| format!(", exit code {c}"))
        .or_else(|| st.signal.map(|s| format!(", signal {s}")))
        .unwrap_or_default();
    let on = host.map(|h| format!(" on {h}")).unwrap_or_default();
    let why = match (end, serving) {
        (EndReason::Exited, true) => "its agent died or was killed".to_owned(),
        (_, true) if untold => "its agent is gone, and the scheduler does not say why (it no \
                                longer lists the job, or shows no exit status)"
            .to_owned(),
        (EndReason::OutOfMemory, _) => "it ran out of memory: ask for more in the \
                                        derivation's job parameters (extraSlurmParams' \
                                        memory_per_node, pbsResources' mem)"
            .to_owned(),
        (e, _) => e.describe().to_owned(),
    };
    let when = if serving {
        "while the build was running"
    } else {
        "before nsh could reach its agent"
    };
    let error = anyhow::anyhow!(
        "job {job}{on} ended ({}{code}) {when}: {why}",
        if st.raw_state.is_empty() {
            "unknown to the scheduler"
        } else {
            &st.raw_state
        }
    );
    Failure {
        kind,
        error,
        host: host.map(str::to_owned),
    }
}

/// Where the failed build's directory is kept on `host` and how to look at it. `dir` comes
/// from the node: one that is not a plain absolute path is shown escaped, with no command.
pub fn kept_dir_message(host: &str, dir: &str, state_dir: &str) -> String {
    let plain = dir.starts_with('/')
        && dir.len() < 4096
        && !dir
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == ';');
    if !plain {
        return format!(
            "nsh: the node {host} says it kept the failed build's directory at {:?}, which \
             is not a plain absolute path: look on the node yourself",
            dir.chars().take(200).collect::<String>()
        );
    }
    let owner = if dir.starts_with(&format!("{state_dir}/")) {
        String::new()
    } else {
        "; it is where the node's Nix keeps its build directories (the Nix daemon's, or its \
         build-dir), not nsh's: remove it as that directory's owner"
            .into()
    };
    format!(
        "nsh: the failed build's directory is kept on {host} at {dir}; look with: ssh {host} \
         ls {dir} (remove it when done){owner}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::JobState;
    use EndReason::*;

    fn ended(end: EndReason, exit_code: Option<i32>, signal: Option<i32>) -> JobStatus {
        JobStatus {
            state: JobState::Failed,
            raw_state: format!("{end:?}").to_uppercase(),
            host: Some("node1".into()),
            exit_code,
            signal,
            reason: None,
            end: Some(end),
            waits_for_nodes: false,
            in_queue: false,
        }
    }

    fn kind(end: EndReason, serving: bool) -> FailureKind {
        let st = ended(end, None, Some(9));
        job_ended(&JobId("7".into()), Some("node1"), &st, serving).kind
    }

    #[test]
    fn exit_codes() {
        assert_eq!(FailureKind::BuilderFailed.exit_code(), 100);
        assert_eq!(FailureKind::TimedOut.exit_code(), 101);
        assert_eq!(FailureKind::Infrastructure.exit_code(), 1);
        assert_eq!(FailureKind::Other.exit_code(), 1);
    }

    #[test]
    fn realise_status() {
        assert_eq!(realise_failure_kind(100), FailureKind::BuilderFailed);
        assert_eq!(realise_failure_kind(101), FailureKind::TimedOut);
        assert_eq!(realise_failure_kind(103), FailureKind::TimedOut);
        assert_eq!(realise_failure_kind(104), FailureKind::BuilderFailed);
        assert_eq!(realise_failure_kind(1), FailureKind::BuilderFailed);
        assert_eq!(realise_failure_kind(129), FailureKind::BuilderFailed);
        assert_eq!(realise_failure_kind(111), FailureKind::TimedOut);
        assert_eq!(realise_failure_kind(113), FailureKind::BuilderFailed);
    }

    #[test]
    fn ended_jobs() {
        for serving in [false, true] {
            assert_eq!(kind(NodeFailed, serving), FailureKind::Infrastructure);
            assert_eq!(kind(Preempted, serving), FailureKind::Infrastructure);
            assert_eq!(kind(LaunchFailed, serving), FailureKind::Infrastructure);
            assert_eq!(kind(TimeLimit, serving), FailureKind::TimedOut);
            assert_eq!(kind(Cancelled, serving), FailureKind::Other);
            assert_eq!(kind(OutOfMemory, serving), FailureKind::Other);
            assert_eq!(kind(Other, serving), FailureKind::Other);
        }
        // An agent that dies mid-build was killed; a script that exits at its start (an
        // unsafe state dir, no agent) is a setup problem.
        assert_eq!(kind(Exited, true), FailureKind::Infrastructure);
        assert_eq!(kind(Exited, false), FailureKind::Other);
    }

    #[test]
    fn untold_ends_under_a_serving_agent_are_the_infrastructure() {
        // PBS without history: the job is gone; the wrappers: `C` with no exit status.
        let mut gone = ended(Other, None, None);
        gone.state = JobState::Unknown;
        gone.end = None;
        let no_status = ended(Other, None, None);
        for st in [gone, no_status] {
            let f = job_ended(&JobId("9".into()), Some("node1"), &st, true);
            assert_eq!(f.kind, FailureKind::Infrastructure);
            let text = format!("{:#}", f.error);
            assert!(text.contains("does not say why"), "{text}");
            let f = job_ended(&JobId("9".into()), Some("node1"), &st, false);
            assert_eq!(f.kind, FailureKind::Other);
        }
    }

    #[test]
    fn messages_name_job_node_and_cause() {
        let st = ended(EndReason::NodeFailed, None, None);
        let f = job_ended(&JobId("7".into()), Some("node1"), &st, true);
        let text = format!("{:#}", f.error);
        assert!(text.contains("job 7 on node1"), "{text}");
        assert!(text.contains("the scheduler lost its node"), "{text}");
        assert_eq!(f.host.as_deref(), Some("node1"));
        let st = ended(EndReason::Exited, None, Some(9));
        let text = format!("{:#}", job_ended(&JobId("8".into()), None, &st, true).error);
        assert!(text.contains("signal 9"), "{text}");
        assert!(text.contains("agent died or was killed"), "{text}");
    }

    #[test]
    fn kept_dir_messages() {
        let m = kept_dir_message("node1", "/s/kept-builds/nix-build-x-0", "/s");
        assert_eq!(
            m,
            "nsh: the failed build's directory is kept on node1 at /s/kept-builds/nix-build-x-0; \
             look with: ssh node1 ls /s/kept-builds/nix-build-x-0 (remove it when done)"
        );
        let m = kept_dir_message("node1", "/tmp/nix-build-x-0", "/s");
        assert!(m.contains("not nsh's"), "{m}");
        let m = kept_dir_message("node1", "/tmp/x; rm -rf /", "/s");
        assert!(!m.contains("look with"), "{m}");
        assert!(kept_dir_message("n", "/a\nb", "/s").contains("\\n"));
    }
}
