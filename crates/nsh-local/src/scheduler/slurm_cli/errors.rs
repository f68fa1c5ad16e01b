//! What a failed `sbatch`, `scontrol` or `scancel` means, from what it printed (Slurm's
//! `slurm_strerror` texts, as in slurm_errno.c; captured ones in `fixtures/`).

use crate::scheduler::ErrorKind;

/// A Slurm command that ran and failed (or answered something nsh cannot use). The message
/// names the command, where it ran, the job and what to do.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
}

/// Limits that free up as jobs end: the same job may be accepted later (the REST backend
/// postpones on the same errors: 2050, 2007, EAGAIN).
const REFUSED: &[&str] = &[
    "accounting/qos policy",
    "maxsubmit",
    "qosmax",
    "job submit limit",
    "unable to create job record",
    "resource temporarily unavailable",
    "temporarily unable to accept job",
];

/// slurmctld (or the way to it) is down or busy.
const TRANSIENT: &[&str] = &[
    "unable to contact slurm controller",
    "socket timed out",
    "connection refused",
    "connection timed out",
    "no route to host",
    "zero bytes were transmitted or received",
    "slurmctld is not responding",
    "communication connection failure",
];

/// slurmctld or munge refused this user.
const AUTH: &[&str] = &[
    "munge",
    "invalid user id",
    "access/permission denied",
    "protocol authentication error",
    "user's group not permitted",
];

/// The kind of a failure from the command's stderr and stdout.
pub fn classify(text: &str) -> ErrorKind {
    let text = text.to_ascii_lowercase();
    let has = |list: &[&str]| list.iter().any(|p| text.contains(p));
    if has(REFUSED) {
        ErrorKind::Refused
    } else if has(TRANSIENT) {
        ErrorKind::Transient
    } else if has(AUTH) {
        ErrorKind::Auth
    } else if text.contains("invalid job id specified") {
        ErrorKind::Gone
    } else {
        ErrorKind::Other
    }
}

/// What to do, per kind, for the end of a message.
pub fn hint(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Transient => {
            "slurmctld could not be reached; nsh tries again later (check that slurmctld \
             runs and that slurm.conf where the commands run names it)"
        }
        ErrorKind::Auth => {
            "Slurm refused the user the commands run as (check munge on that host, and \
             job-user or the login host's ssh User, and the user's account in sacctmgr)"
        }
        ErrorKind::Refused => {
            "a QOS, association or queue limit refused the job; nsh postpones the build"
        }
        ErrorKind::Gone => "the job is gone",
        ErrorKind::Other => "see the command's message",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_and_captured_messages() {
        let cases = [
            (
                "sbatch: error: Batch job submission failed: Job violates accounting/QOS \
                 policy (job submit limit, user's size and/or time limits)",
                ErrorKind::Refused,
            ),
            (
                "sbatch: error: QOSMaxSubmitJobPerUserLimit",
                ErrorKind::Refused,
            ),
            (
                "sbatch: error: Batch job submission failed: Unable to contact slurm \
                 controller (connect failure)",
                ErrorKind::Transient,
            ),
            (
                "squeue: error: slurm_receive_msg: Socket timed out on send/recv operation",
                ErrorKind::Transient,
            ),
            (
                "sbatch: error: Batch job submission failed: Invalid user id",
                ErrorKind::Auth,
            ),
            (
                "scancel: error: Kill job error on job id 7: Access/permission denied",
                ErrorKind::Auth,
            ),
            (
                "sbatch: error: Munge encode failed: Failed to access \"/run/munge/munge.socket.2\"",
                ErrorKind::Auth,
            ),
        ];
        for (text, kind) in cases {
            assert_eq!(classify(text), kind, "{text}");
        }
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src/scheduler/slurm_cli/fixtures"
        );
        for generation in ["sid", "bookworm"] {
            for (name, kind) in [
                ("show-unknown", ErrorKind::Gone),
                ("scancel-kill-unknown", ErrorKind::Gone),
                ("sbatch-badpart", ErrorKind::Other),
                ("sbatch-badmem", ErrorKind::Other),
                ("sbatch-badopt", ErrorKind::Other),
            ] {
                let text =
                    std::fs::read_to_string(format!("{dir}/{generation}-{name}.stderr")).unwrap();
                assert_eq!(classify(&text), kind, "{generation}-{name}: {text}");
            }
        }
    }
}
