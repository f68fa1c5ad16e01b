//! What a failed `qsub`, `qstat` or `qdel` means, from what it printed. The texts are the
//! server's error messages and the clients' own, as OpenPBS words them (Torque kept most of
//! the wording); the captured ones are in `fixtures/`.

use crate::scheduler::ErrorKind;

/// A PBS command that ran and failed (or answered something nsh cannot use). The message
/// names the command, where it ran, the job and what to do.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
}

/// Per-user, per-group, per-project and queue limits: the same job may be accepted later.
const REFUSED: &[&str] = &[
    "would exceed",
    "maximum number of jobs",
    "already in queue",
    "already in complex",
    "queue is not enabled",
    "maximum number of jobs in 'q' state",
];

/// The server (or the way to it) is down or busy.
const TRANSIENT: &[&str] = &[
    "cannot connect to server",
    "couldn't connect to cluster",
    "connection refused",
    "connection timed out",
    "no route to host",
    "communication failure",
    "pbs_iff",
    "no free connections",
    "server shutdown",
    "server is busy",
    "batch protocol error",
    "end of file",
    "premature end of message",
    "pbs_connect",
    "cannot send request",
    "unable to communicate",
];

/// The server refused this user.
const AUTH: &[&str] = &[
    "bad uid for job execution",
    "unauthorized request",
    "invalid credential",
    "bad user",
];

/// The kind of a failure from the command's stderr and stdout (some clients print there).
pub fn classify(text: &str) -> ErrorKind {
    let text = text.to_ascii_lowercase();
    let has = |list: &[&str]| list.iter().any(|p| text.contains(p));
    if has(REFUSED) {
        ErrorKind::Refused
    } else if has(AUTH) {
        ErrorKind::Auth
    } else if has(TRANSIENT) {
        ErrorKind::Transient
    } else if text.contains("unknown job id") {
        ErrorKind::Gone
    } else {
        ErrorKind::Other
    }
}

/// What to do, per kind, for the end of a message.
pub fn hint(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Transient => {
            "the PBS server could not be reached; nsh tries again later (check that \
             pbs_server runs and that pbs-host/pbs-port or pbs.conf name it)"
        }
        ErrorKind::Auth => {
            "the PBS server refused the user nsh submits as (a cluster submitted to from \
             another host needs flatuid=True; root needs acl_roots, or use login-host to \
             submit as a normal user)"
        }
        ErrorKind::Refused => "a queue or user limit refused the job; nsh postpones the build",
        ErrorKind::Gone => "the job is gone",
        ErrorKind::Other => "see the command's message",
    }
}

/// "Unknown Job Id" (exit 153 on OpenPBS and Torque).
pub fn is_unknown_job(status: Option<i32>, text: &str) -> bool {
    status == Some(153) || text.to_ascii_lowercase().contains("unknown job id")
}

/// "Job has finished" (exit 35): history on, and a query without `-x`.
pub fn is_finished_job(text: &str) -> bool {
    text.to_ascii_lowercase().contains("job has finished")
}

/// `-x` while the server keeps no history: OpenPBS then answers nothing, even for a job
/// that is still running.
pub fn is_history_off(text: &str) -> bool {
    text.contains("not configured to maintain job history")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captured_and_documented_messages() {
        let cases = [
            (
                include_str!("fixtures/openpbs-23.06-qsub-bad-uid.stderr"),
                ErrorKind::Auth,
            ),
            (
                "qsub: would exceed complex's per-user limit",
                ErrorKind::Refused,
            ),
            (
                "qsub: Maximum number of jobs already in queue workq",
                ErrorKind::Refused,
            ),
            (
                "qsub: Maximum number of jobs for user alice already in complex",
                ErrorKind::Refused,
            ),
            (
                "qsub: would exceed limit on resource ncpus in queue workq",
                ErrorKind::Refused,
            ),
            ("qsub: Unauthorized Request ", ErrorKind::Auth),
            (
                "Connection refused\nqsub: cannot connect to server pbs1 (errno=111)",
                ErrorKind::Transient,
            ),
            (
                "pbs_iff: cannot connect to host\nNo Permission.",
                ErrorKind::Transient,
            ),
            (
                "qstat: cannot connect to server vm (errno=15010)",
                ErrorKind::Transient,
            ),
            ("qsub: Unknown resource Resource_List.foo", ErrorKind::Other),
            ("qsub: Job exceeds queue resource limits", ErrorKind::Other),
        ];
        for (text, kind) in cases {
            assert_eq!(classify(text), kind, "{text}");
        }
        let captured = [
            ("openpbs-23.06-qsub-limit", ErrorKind::Refused),
            ("openpbs-23.06-server-down.qsub", ErrorKind::Transient),
            ("openpbs-23.06-server-down.x-json", ErrorKind::Transient),
            ("openpbs-23.06-server-down.qdel", ErrorKind::Transient),
            ("openpbs-23.06-qdel-unauthorized", ErrorKind::Auth),
            ("openpbs-23.06-qsub-unknown-resource", ErrorKind::Other),
            ("openpbs-23.06-qdel-malformed", ErrorKind::Other),
        ];
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/scheduler/pbs/fixtures");
        for (name, kind) in captured {
            let text = std::fs::read_to_string(format!("{dir}/{name}.stderr")).unwrap();
            assert_eq!(classify(&text), kind, "{name}: {text}");
        }
    }

    #[test]
    fn gone_and_history() {
        let unknown = include_str!("fixtures/openpbs-23.06-qdel-unknown.stderr");
        assert!(is_unknown_job(Some(153), unknown));
        assert!(is_unknown_job(None, unknown));
        assert!(is_finished_job(include_str!(
            "fixtures/openpbs-23.06-qdel-finished.stderr"
        )));
        assert!(is_history_off(include_str!(
            "fixtures/openpbs-23.06-nohistory-running.x-json.stderr"
        )));
    }
}
