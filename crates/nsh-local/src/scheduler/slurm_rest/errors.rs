//! What can go wrong talking to slurmrestd, each with what to check, and how the hook
//! treats it ([`ErrorKind`]).

use reqwest::StatusCode;

use crate::scheduler::ErrorKind;

/// Why a REST call failed. Wrapped in `anyhow::Error`; callers may downcast to branch.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(
        "{endpoint} {} the JWT while {action} (HTTP {status}: {detail}): check \
         `slurm-jwt-token` and whether it has expired (`scontrol token lifespan=SECONDS` \
         issues a new one)",
        if *.ambiguous { "probably rejected" } else { "rejected" }
    )]
    TokenRejected {
        endpoint: String,
        action: String,
        status: StatusCode,
        detail: String,
        /// Slurm 22.05–23.11 answers a bad token with a 500 that a lost slurmctld could
        /// also cause, so it may be worth trying again.
        ambiguous: bool,
    },
    #[error("{endpoint} answered HTTP {status} while {action}: {detail}")]
    Http {
        endpoint: String,
        action: String,
        status: StatusCode,
        detail: String,
    },
    #[error(
        "{endpoint} refused the job for a limit while {action}: {detail}; nsh postpones the \
         build until a job of this user ends (set max-queued-jobs below the limit to stay \
         clear of it)"
    )]
    Limit {
        endpoint: String,
        action: String,
        detail: String,
    },
    #[error("{problem} ({endpoint}, while {action}); {check}")]
    Tls {
        endpoint: String,
        action: String,
        /// What failed, e.g. `TLS verification failed for host 10.0.0.1: …; the token was
        /// not sent`.
        problem: String,
        /// What to check, naming the setting.
        check: String,
    },
    #[error("no answer from {endpoint} while {action}: is slurmrestd running and reachable?")]
    Unreachable {
        endpoint: String,
        action: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("no connection to {endpoint} free while {action}: {detail}")]
    Busy {
        endpoint: String,
        action: String,
        detail: String,
    },
    #[error("{endpoint} gave an unexpected answer while {action}: {detail}")]
    BadAnswer {
        endpoint: String,
        action: String,
        detail: String,
    },
    #[error("{endpoint}: {detail}")]
    Version { endpoint: String, detail: String },
    #[error("`slurm-jwt-token` is unusable: {0}")]
    BadToken(&'static str),
    #[error("cannot submit job `{name}`: {detail}")]
    BadJob { name: String, detail: String },
}

impl Error {
    /// True when trying again later may work (network trouble, a busy or restarting server).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Unreachable { .. } | Error::Busy { .. } => true,
            Error::TokenRejected { ambiguous, .. } => *ambiguous,
            Error::Http { status, .. } => {
                status.is_server_error() || *status == StatusCode::TOO_MANY_REQUESTS
            }
            _ => false,
        }
    }

    /// True when slurmctld refused a submission for a per-user, account or QOS limit, or a
    /// full queue: the same job may be accepted once other jobs end.
    pub fn is_limit(&self) -> bool {
        matches!(self, Error::Limit { .. })
    }

    /// This error as the hook sees it, whichever backend runs.
    pub fn kind(&self) -> ErrorKind {
        if self.is_transient() {
            ErrorKind::Transient
        } else if self.is_limit() {
            ErrorKind::Refused
        } else if matches!(self, Error::TokenRejected { .. } | Error::BadToken(_)) {
            ErrorKind::Auth
        } else {
            ErrorKind::Other
        }
    }
}
