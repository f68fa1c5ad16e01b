//! Batch schedulers behind one interface. Each backend owns its wire details (Slurm JSON,
//! PBS output); the rest of nsh sees only [`JobSpec`], [`JobId`] and [`JobStatus`].

pub mod backend;
pub mod commands;
pub mod job_params;
pub mod job_user;
pub mod pbs;
pub mod slurm_cli;
pub mod slurm_native;
pub mod slurm_rest;
pub mod slurm_state;

use std::fmt;

pub use backend::{Backend, derivation_params};

/// What nsh asks the scheduler to run: one batch job per derivation.
#[derive(Debug, Clone)]
pub struct JobSpec {
    /// Short job name (shown in `squeue`), derived from the derivation name.
    pub name: String,
    /// The job script (`#!/bin/sh` …) that starts the agent.
    pub script: String,
    /// Environment of the job (`NAME=value`), PATH at least.
    pub environment: Vec<(String, String)>,
    /// Working directory of the job on the cluster.
    pub working_dir: String,
    /// The backend's own job parameters, checked: the derivation's attribute
    /// (`extraSlurmParams`, `pbsResources`) with the admin's settings over it.
    pub params: JobParams,
    /// Hosts the job must not run on (where an earlier attempt of this build was lost);
    /// added to any the derivation or the admin excluded.
    pub exclude_hosts: Vec<String>,
}

/// Per-derivation job parameters, in the form of the backend that will submit the job; each
/// backend parses and checks its own derivation attribute before the offer is accepted.
#[derive(Debug, Clone, PartialEq)]
pub enum JobParams {
    /// Fields of slurmrestd's `job` object; nsh's own fields are set over them.
    SlurmRest(serde_json::Map<String, serde_json::Value>),
    /// PBS resources, each passed as `-l name=value`, in order; names and values checked.
    Pbs(Vec<(String, String)>),
    /// `slurmNativeConstraints`, checked.
    SlurmNative(slurm_native::Constraints),
    /// `sbatch` options, one word each (`--cpus-per-task=2`), checked.
    SlurmCli(Vec<String>),
}

impl JobParams {
    /// No parameters, for `scheduler`.
    pub fn none_for(scheduler: crate::config::JobScheduler) -> JobParams {
        match scheduler {
            crate::config::JobScheduler::Pbs => JobParams::Pbs(Vec::new()),
            crate::config::JobScheduler::SlurmNative => {
                JobParams::SlurmNative(slurm_native::Constraints::default())
            }
            crate::config::JobScheduler::SlurmCli => JobParams::SlurmCli(Vec::new()),
            _ => JobParams::SlurmRest(serde_json::Map::new()),
        }
    }
}

/// What kind of failure a scheduler error is, so the hook can retry, postpone or give up
/// without knowing which backend it talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The scheduler (or the host its commands run on) could not be reached, was busy or
    /// restarting: the same request may work later.
    Transient,
    /// The scheduler refused nsh's credentials (an expired token, no permission).
    Auth,
    /// A submission refused for a per-user, account or QOS limit or a full queue: the same
    /// job may be accepted later, so the offer is postponed.
    Refused,
    /// The scheduler does not know the job (any more).
    Gone,
    /// Anything else: the request was wrong, or the scheduler failed.
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JobId(pub String);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Queued, held, or being configured: not running yet.
    Pending,
    Running,
    /// Ended; `exit_code` tells how.
    Finished,
    /// Ended by a cancel, a node failure, a time limit, preemption…
    Failed,
    /// The scheduler no longer knows the job (purged after MinJobAge or never existed).
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobStatus {
    pub state: JobState,
    /// The scheduler's own state word(s), for messages (e.g. `PENDING`, `NODE_FAIL`).
    pub raw_state: String,
    /// Host the batch script runs on, once known.
    pub host: Option<String>,
    /// Exit code of the batch script once finished (not a raw wait status).
    pub exit_code: Option<i32>,
    /// Signal that ended the script, if any.
    pub signal: Option<i32>,
    /// Why the job waits or failed, as the scheduler says it (`Resources`, `PartitionDown`…).
    pub reason: Option<String>,
    /// The job still counts as queued (the scheduler's queue listing shows it: pending,
    /// running, or still completing after it ended). `max-queued-jobs` counts these.
    pub in_queue: bool,
    /// For an ended job: how it ended, in the scheduler's terms mapped to nsh's.
    pub end: Option<EndReason>,
    /// A pending job that waits because the nodes it may use are down or unavailable (not
    /// merely busy).
    pub waits_for_nodes: bool,
}

impl JobStatus {
    /// A job the scheduler does not know (any more).
    pub fn unknown() -> JobStatus {
        JobStatus {
            state: JobState::Unknown,
            raw_state: String::new(),
            host: None,
            exit_code: None,
            signal: None,
            reason: None,
            in_queue: false,
            end: None,
            waits_for_nodes: false,
        }
    }
}

/// How a job ended, as far as nsh cares: whether the infrastructure took it (worth a fresh
/// job), someone ended it on purpose, or its script simply exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The script exited by itself (`exit_code`/`signal` say how).
    Exited,
    /// The node failed or was lost.
    NodeFailed,
    /// Preempted by a higher-priority job (nsh asks for no requeue).
    Preempted,
    /// The nodes could not boot or the job could not be launched on them.
    LaunchFailed,
    /// The job's time limit or deadline passed.
    TimeLimit,
    /// The job used more memory than it asked for.
    OutOfMemory,
    /// Cancelled by a user or an admin (or by nsh).
    Cancelled,
    /// Any other way (a state word nsh does not know).
    Other,
}

impl EndReason {
    /// Lost to the machine, not to the build or to anyone's decision: a fresh job on
    /// healthy nodes may well succeed.
    pub fn is_infrastructure(self) -> bool {
        matches!(
            self,
            EndReason::NodeFailed | EndReason::Preempted | EndReason::LaunchFailed
        )
    }

    /// For messages.
    pub fn describe(self) -> &'static str {
        match self {
            EndReason::Exited => "its script exited",
            EndReason::NodeFailed => "the scheduler lost its node",
            EndReason::Preempted => "it was preempted",
            EndReason::LaunchFailed => "it could not be launched on its node",
            EndReason::TimeLimit => "it reached its time limit",
            EndReason::OutOfMemory => "it ran out of memory",
            EndReason::Cancelled => "it was cancelled",
            EndReason::Other => "the scheduler ended it",
        }
    }
}

/// Slurm's count of the CPUs the job has on the node (set in the batch environment by
/// slurmd, whatever the submission path and `--export`).
pub const SLURM_CPU_VARS: &str = "SLURM_CPUS_ON_NODE";

/// The operations nsh needs from a batch scheduler. Errors name the scheduler endpoint and
/// the job, and say what to do.
pub trait Scheduler: Send + Sync {
    /// Submits the job; returns as soon as the scheduler accepted it.
    fn submit(&self, job: &JobSpec) -> impl Future<Output = anyhow::Result<JobId>> + Send;
    fn status(&self, id: &JobId) -> impl Future<Output = anyhow::Result<JobStatus>> + Send;
    /// Cancels the job; succeeds if the job is already gone.
    fn cancel(&self, id: &JobId) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Human-readable name of the endpoint, for messages (`slurmrestd at host:port (v0.0.42)`).
    fn describe(&self) -> String;
    /// The scheduler's short name (`slurm`, `pbs`), for the machine Nix shows (`slurm job 7`).
    fn name(&self) -> &'static str;
    /// The job environment's variables (space-separated, most specific first) that carry
    /// the CPUs the job got on its node: the job script hands them to the agent, which
    /// builds with that many `cores` (see `nsh-remote`'s `job_cpus.rs`).
    fn cpu_count_vars(&self) -> &'static str;
    /// The kind of an error this backend returned (looked for anywhere in its chain).
    fn error_kind(&self, e: &anyhow::Error) -> ErrorKind;
    /// Whether nsh's credentials for this scheduler can expire while a build runs (Slurm
    /// REST's token): only then does the end of a build ask the scheduler once more, to
    /// tell the user before the next build is refused.
    fn credentials_expire(&self) -> bool {
        false
    }
    /// Whether a rejected credential was replaced by a renewed one (re-read from nsh.conf's
    /// sources) since the last call; only the Slurm REST backend renews.
    fn take_token_renewal(&self) -> bool {
        false
    }
    /// Whether `e` says the scheduler refused nsh's credentials, even if only probably
    /// (Slurm 22.05–23.11 answer an expired token with a 500 a lost slurmctld could also
    /// cause, which counts as [`ErrorKind::Transient`]).
    fn rejects_credentials(&self, e: &anyhow::Error) -> bool {
        self.error_kind(e) == ErrorKind::Auth
    }
}

/// Checks a host name the scheduler gave before it reaches `ssh` or a message: letters,
/// digits, `-`, `_` and `.`, starting with a letter or digit, at most 253 bytes. Anything
/// else (`-oProxyCommand=…`, spaces, shell or control characters) comes from a confused or
/// hostile scheduler and is refused; the error shows the name escaped.
pub fn check_host_name(host: &str) -> Result<(), String> {
    let shown = || {
        host.chars()
            .take(80)
            .flat_map(char::escape_debug)
            .collect::<String>()
    };
    let first_ok = host
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric());
    let chars_ok = host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if host.len() > 253 || !first_ok || !chars_ok || host.contains("..") {
        return Err(format!(
            "'{}' is not a plausible host name (letters, digits, '-', '_' and '.', starting \
             with a letter or digit)",
            shown()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_host_name;

    #[test]
    fn host_names() {
        for ok in ["node1", "n-01.cluster.example", "c1_gpu", "10.0.0.7", "a"] {
            assert!(check_host_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-oProxyCommand=id",
            ".node",
            "node 1",
            "node;id",
            "$(id)",
            "node\n# accept",
            "a..b",
            "node1/x",
            "n`id`",
            "user@node",
            "node:22",
        ] {
            let err = check_host_name(bad).unwrap_err();
            assert!(!err.contains('\n'), "{err}");
        }
        assert!(check_host_name(&"a".repeat(254)).is_err());
    }
}
