//! What a failed libslurm call means. Slurm's error numbers (`slurm_errno.h`) are
//! explicit and have kept their values across the releases nsh supports; the layout test
//! checks them against each release's own header.

use crate::scheduler::ErrorKind;

/// `ESLURM_INVALID_JOB_ID`: slurmctld does not know the job (never, or purged).
pub const ESLURM_INVALID_JOB_ID: i32 = 2017;
/// `ESLURM_ALREADY_DONE`: the job is completing or completed.
pub const ESLURM_ALREADY_DONE: i32 = 2021;
/// `ESLURM_USER_ID_MISSING`: slurmctld refuses the job's user (or root's right to name one).
pub const ESLURM_USER_ID_MISSING: i32 = 2010;
/// `ESLURM_ACCESS_DENIED`.
pub const ESLURM_ACCESS_DENIED: i32 = 2002;
/// Limits that free up as jobs end: `ESLURM_ACCOUNTING_POLICY` (MaxSubmitJobs and the QOS
/// and association limits), `ESLURM_ERROR_ON_DESC_TO_RECORD_COPY` (MaxJobCount) and
/// `EAGAIN`; sbatch sleeps and retries on the last two.
pub const LIMITS: [i32; 3] = [2050, 2007, libc::EAGAIN];
/// `SLURM_PROTOCOL_AUTHENTICATION_ERROR`.
pub const SLURM_PROTOCOL_AUTHENTICATION_ERROR: i32 = 1007;

/// A libslurm call that failed, or a library that could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    pub kind: ErrorKind,
    /// Slurm's error number, when libslurm gave one.
    pub code: Option<i32>,
    pub message: String,
}

impl Error {
    pub fn other(message: String) -> Error {
        Error {
            kind: ErrorKind::Other,
            code: None,
            message,
        }
    }
}

/// The kind of Slurm error `code`.
pub fn classify(code: i32) -> ErrorKind {
    match code {
        ESLURM_INVALID_JOB_ID => ErrorKind::Gone,
        c if LIMITS.contains(&c) => ErrorKind::Refused,
        SLURM_PROTOCOL_AUTHENTICATION_ERROR | ESLURM_USER_ID_MISSING | ESLURM_ACCESS_DENIED => {
            ErrorKind::Auth
        }
        // ESLURM_AUTH_*: munge could not vouch for this process.
        6000..=6099 => ErrorKind::Auth,
        // SLURM_COMMUNICATIONS_* and the protocol's socket errors, SLURMCTLD_COMMUNICATIONS_*,
        // ESLURM_IN_STANDBY_MODE and errno's connection errors: slurmctld is down, busy or
        // failing over.
        1000..=1006 | 1008..=1099 | 1800..=1899 | 5000..=5099 | 2027 => ErrorKind::Transient,
        libc::ECONNREFUSED | libc::ETIMEDOUT | libc::ECONNRESET | libc::EHOSTUNREACH => {
            ErrorKind::Transient
        }
        _ => ErrorKind::Other,
    }
}

/// What to do, per kind, for the end of a message.
pub fn hint(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Transient => {
            "slurmctld could not be reached; nsh tries again later (check `scontrol ping` \
             on this machine, and slurm-conf)"
        }
        ErrorKind::Auth => {
            "slurmctld refused this machine's credentials: munged must run here with the \
             cluster's key, and job-user must be a user Slurm knows"
        }
        ErrorKind::Refused => "a queue or account limit; nsh postpones the build and retries",
        ErrorKind::Gone => "slurmctld does not know the job (any more)",
        ErrorKind::Other => "check the job's settings and slurmctld's log",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The numbers above are each supported release's own (from its generated layout).
    #[test]
    fn numbers_match_every_layout() {
        for layout in crate::scheduler::slurm_native::layouts::SUPPORTED {
            for (name, code) in [
                ("ESLURM_INVALID_JOB_ID", ESLURM_INVALID_JOB_ID),
                ("ESLURM_ALREADY_DONE", ESLURM_ALREADY_DONE),
                ("ESLURM_USER_ID_MISSING", ESLURM_USER_ID_MISSING),
                ("ESLURM_ACCESS_DENIED", ESLURM_ACCESS_DENIED),
                ("ESLURM_ACCOUNTING_POLICY", LIMITS[0]),
                (
                    "SLURM_PROTOCOL_AUTHENTICATION_ERROR",
                    SLURM_PROTOCOL_AUTHENTICATION_ERROR,
                ),
            ] {
                assert_eq!(
                    layout.error(name),
                    Some(code),
                    "{name} in {}",
                    layout.release
                );
            }
        }
    }

    #[test]
    fn kinds() {
        assert_eq!(classify(2017), ErrorKind::Gone);
        assert_eq!(classify(2050), ErrorKind::Refused);
        assert_eq!(classify(libc::EAGAIN), ErrorKind::Refused);
        assert_eq!(classify(1007), ErrorKind::Auth);
        assert_eq!(classify(6000), ErrorKind::Auth);
        assert_eq!(classify(1800), ErrorKind::Transient);
        assert_eq!(classify(1001), ErrorKind::Transient);
        assert_eq!(classify(libc::ECONNREFUSED), ErrorKind::Transient);
        // ESLURM_INVALID_PARTITION_NAME: the request was wrong.
        assert_eq!(classify(2000), ErrorKind::Other);
    }
}
