//! Slurm through libslurm (`job-scheduler = slurm-native`), the reference tool's way in,
//! with one nsh binary for every Slurm release it knows.
//!
//! libslurm's API and struct layouts change at every major release and it is installed
//! only where Slurm is, so nsh links none of it: [`ffi`] loads it at run time, asks it
//! its API number, and uses that release's layout of the few structures nsh touches
//! ([`layouts`], generated from each release's own `slurm.h` by `tools/slurm-layout`).
//!
//! Every call into libslurm blocks (it talks to slurmctld and waits out its timeouts), so
//! each runs on tokio's blocking pool ([`ffi::Libslurm`] itself lets one call in at a time).
//!
//! As whom: libslurm authenticates this process through munge, and Slurm lets root submit
//! for any user. A root hook therefore submits with `user_id`/`group_id` of `job-user`
//! ([`super::job_user`]); without one it refuses, unless `allow-root-jobs` says root jobs
//! are meant.

pub mod constraints;
mod errors;
pub mod ffi;
pub mod layouts;

#[cfg(test)]
mod testbed_tests;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use anyhow::Result;

use super::job_user::JobUser;
use super::{
    ErrorKind, JobId, JobParams, JobSpec, JobStatus, SLURM_CPU_VARS, Scheduler, slurm_state,
};
pub use constraints::Constraints;
pub use errors::Error;

/// The libslurm backend.
pub struct SlurmNative {
    lib: Arc<ffi::Libslurm>,
    job_user: Option<JobUser>,
}

/// libslurm may be initialised once per process (`slurm_init` reads slurm.conf and its
/// plugins); the first backend built keeps it, with the settings it was opened with.
static LIBRARY: OnceLock<(Option<PathBuf>, Option<PathBuf>, Arc<ffi::Libslurm>)> = OnceLock::new();

impl SlurmNative {
    /// Loads libslurm (`slurm-library`, else the dynamic linker's search) with
    /// `slurm-conf`, for jobs of `job_user` (`None`: as this process).
    pub async fn open(
        library: Option<PathBuf>,
        slurm_conf: Option<PathBuf>,
        job_user: Option<JobUser>,
    ) -> Result<SlurmNative> {
        // libslurm ends the whole process (fatal()) on a slurm.conf it cannot read, so a
        // named one is checked first.
        if let Some(conf) = &slurm_conf
            && let Err(e) = std::fs::File::open(conf)
        {
            anyhow::bail!(
                "slurm-conf = {}: cannot read it ({e}); name the cluster's slurm.conf, or remove \
                 slurm-conf to let Slurm find its own",
                conf.display()
            );
        }
        let lib = blocking("loading libslurm", move || {
            if let Some((l, c, lib)) = LIBRARY.get() {
                if *l == library && *c == slurm_conf {
                    return Ok(lib.clone());
                }
                return Err(Error::other(
                    "libslurm is already loaded with other settings in this process".into(),
                ));
            }
            let lib = ffi::Libslurm::open(library.as_deref(), slurm_conf.as_deref())
                .map_err(|e| Error::other(format!("{e}")))?;
            let lib = Arc::new(lib);
            Ok(LIBRARY.get_or_init(|| (library, slurm_conf, lib)).2.clone())
        })
        .await?;
        Ok(SlurmNative { lib, job_user })
    }

    /// The release whose layout is used, and the file loaded, for `nsh check`.
    pub fn library(&self) -> String {
        format!(
            "libslurm of Slurm {} ({})",
            self.lib.release(),
            self.lib.library_path()
        )
    }

    /// Whether slurmctld answers and accepts this machine's credentials: asks for a job
    /// that cannot exist.
    pub async fn ping(&self) -> Result<()> {
        let lib = self.lib.clone();
        blocking("asking slurmctld for a job", move || {
            lib.load_job(u32::MAX - 2).map(drop).map_err(|e| {
                slurm_error(
                    &lib,
                    &e,
                    "asking slurmctld about a job (nsh check)".into(),
                    Some(errors::hint(errors::classify(e.code))),
                )
            })
        })
        .await
        .map_err(Into::into)
    }

    fn job_desc(&self, job: &JobSpec) -> Result<ffi::JobDesc> {
        let JobParams::SlurmNative(constraints) = &job.params else {
            anyhow::bail!("slurm-native was given another backend's job parameters (a bug)");
        };
        let (min_memory_mb, memory_per_cpu) = match constraints.memory {
            None => (None, false),
            Some(constraints::Memory::PerNode(mb)) => (Some(mb), false),
            Some(constraints::Memory::PerCpu(mb)) => (Some(mb), true),
        };
        let mut environment = Vec::with_capacity(job.environment.len());
        for (name, value) in &job.environment {
            if name.is_empty() || name.contains(['=', '\0']) || value.contains('\0') {
                anyhow::bail!("environment variable name `{name}` is empty or has `=`/NUL");
            }
            environment.push(format!("{name}={value}"));
        }
        Ok(ffi::JobDesc {
            name: job.name.clone(),
            script: job.script.clone(),
            environment,
            work_dir: job.working_dir.clone(),
            std_out: "/dev/null".into(),
            std_err: "/dev/null".into(),
            cpus_per_task: constraints.cpus,
            min_memory_mb,
            memory_per_cpu,
            user_id: self.job_user.as_ref().map(|u| u.uid),
            group_id: self.job_user.as_ref().map(|u| u.gid),
            exclude_nodes: (!job.exclude_hosts.is_empty()).then(|| job.exclude_hosts.join(",")),
        })
    }

    fn whose(&self) -> String {
        match &self.job_user {
            Some(u) => format!(" for {} (job-user)", u.name),
            None => String::new(),
        }
    }
}

/// Runs `f` on the blocking pool.
async fn blocking<T: Send + 'static>(
    what: &'static str,
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(Error::other(format!(
            "{what}: the call into libslurm failed: {e}"
        )))
    })
}

/// A libslurm error as nsh's, with what was being done and what to do.
fn slurm_error(
    lib: &ffi::Libslurm,
    e: &ffi::SlurmError,
    doing: String,
    hint: Option<&str>,
) -> Error {
    let kind = errors::classify(e.code);
    let hint = hint.unwrap_or_else(|| errors::hint(kind));
    let name = match lib.layout().error_name(e.code) {
        Some(name) => format!(" {name}"),
        None => String::new(),
    };
    Error {
        kind,
        code: Some(e.code),
        message: format!(
            "{doing}: {} failed: {} (Slurm error {}{name}); {hint}",
            e.call, e.message, e.code
        ),
    }
}

fn job_number(id: &JobId) -> Result<u32> {
    id.0.parse::<u32>()
        .map_err(|_| anyhow::anyhow!("'{id}' is not a Slurm job id"))
}

impl Scheduler for SlurmNative {
    async fn submit(&self, job: &JobSpec) -> Result<JobId> {
        let desc = self.job_desc(job)?;
        let lib = self.lib.clone();
        let doing = format!(
            "submitting job '{}' through libslurm{}",
            job.name,
            self.whose()
        );
        let id = blocking("submitting a job", move || {
            lib.submit(&desc)
                .map_err(|e| slurm_error(&lib, &e, doing, None))
        })
        .await?;
        Ok(JobId(id.to_string()))
    }

    async fn status(&self, id: &JobId) -> Result<JobStatus> {
        let number = job_number(id)?;
        let lib = self.lib.clone();
        let doing = format!("asking slurmctld about job {id}");
        let info = blocking("asking about a job", move || {
            lib.load_job(number)
                .map_err(|e| slurm_error(&lib, &e, doing, None))
        })
        .await?;
        let Some(info) = info else {
            return Ok(JobStatus::unknown());
        };
        let words: Vec<String> = ffi::state_words(&self.lib, info.job_state)
            .into_iter()
            .map(str::to_owned)
            .collect();
        if words.is_empty() {
            anyhow::bail!(
                "slurmctld reported job {id} in state {:#x}, which Slurm {} does not define",
                info.job_state,
                self.lib.release()
            );
        }
        let (exit_code, signal) = wait_status(info.exit_code);
        Ok(slurm_state::job_status(&slurm_state::Facts {
            words: &words,
            exit_code,
            signal,
            batch_host: info.batch_host.as_deref(),
            nodes: info.nodes.as_deref(),
            reason: info.state_reason.as_deref(),
        }))
    }

    async fn cancel(&self, id: &JobId) -> Result<()> {
        let number = job_number(id)?;
        let lib = self.lib.clone();
        let doing = format!("cancelling job {id} through libslurm");
        blocking("cancelling a job", move || {
            match lib.kill_job(number, libc::SIGKILL as u16) {
                Ok(()) => Ok(()),
                // Already ended, or purged: nothing left to cancel.
                Err(e)
                    if e.code == errors::ESLURM_ALREADY_DONE
                        || e.code == errors::ESLURM_INVALID_JOB_ID =>
                {
                    Ok(())
                }
                Err(e) => Err(slurm_error(&lib, &e, doing, None)),
            }
        })
        .await
        .map_err(Into::into)
    }

    fn describe(&self) -> String {
        format!("slurmctld through libslurm (Slurm {})", self.lib.release())
    }

    fn name(&self) -> &'static str {
        "slurm"
    }

    fn cpu_count_vars(&self) -> &'static str {
        SLURM_CPU_VARS
    }

    fn error_kind(&self, e: &anyhow::Error) -> ErrorKind {
        e.chain()
            .find_map(|c| c.downcast_ref::<Error>())
            .map_or(ErrorKind::Other, |e| e.kind)
    }
}

/// A raw wait status (`exit_code` of a job record) as exit code and signal.
fn wait_status(raw: u32) -> (Option<i32>, Option<i32>) {
    let signal = (raw & 0x7f) as i32;
    if signal != 0 {
        (None, Some(signal))
    } else {
        (Some(((raw >> 8) & 0xff) as i32), None)
    }
}

#[cfg(test)]
mod tests {
    use super::wait_status;

    #[test]
    fn wait_statuses() {
        assert_eq!(wait_status(0), (Some(0), None));
        assert_eq!(wait_status(3 << 8), (Some(3), None));
        assert_eq!(wait_status(9), (None, Some(9)));
        assert_eq!(wait_status(15 | 0x80), (None, Some(15)));
    }
}
