//! libslurm, opened at run time: a blocking, safe API over the calls nsh needs.
//!
//! One nsh binary serves every supported Slurm release: the library is found by soname
//! (or the `slurm-library` setting), its `slurm_api_version()` picks the generated layout
//! (layouts/), and every struct is read and written at that layout's offsets. Calls are
//! serialised on an internal lock (libslurm reports errors through the thread's errno and
//! its client side is not documented as thread-safe), so one `Libslurm` may be shared.

mod job_desc;
mod job_info;
mod library;

use std::ffi::{c_int, c_void};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use library::{KillJobFn, LoadJobFn, StepId24};

use super::layouts::Layout;

/// What a batch job is submitted with. Everything else keeps libslurm's defaults.
#[derive(Debug, Clone, Default)]
pub struct JobDesc {
    pub name: String,
    pub script: String,
    /// "K=V" entries: the job's whole environment.
    pub environment: Vec<String>,
    pub work_dir: String,
    pub std_out: String,
    pub std_err: String,
    pub cpus_per_task: Option<u16>,
    pub min_memory_mb: Option<u64>,
    /// `min_memory_mb` is per CPU (Slurm's MEM_PER_CPU flag), else per node.
    pub memory_per_cpu: bool,
    pub user_id: Option<u32>,
    pub group_id: Option<u32>,
    pub exclude_nodes: Option<String>,
}

/// A job as slurmctld reports it, copied out of libslurm's response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobInfo {
    pub job_id: u32,
    /// Raw: base state | flags (see `state_words`).
    pub job_state: u32,
    /// Raw wait status of the batch script.
    pub exit_code: u32,
    pub batch_host: Option<String>,
    pub nodes: Option<String>,
    /// slurm_job_state_reason_string of the reason; None for "None".
    pub state_reason: Option<String>,
    pub state_desc: Option<String>,
    pub user_id: u32,
    pub num_cpus: u32,
    pub pn_min_memory: u64,
}

/// A failed libslurm call: Slurm's error number, slurm_strerror's text, which call.
/// `code` 0 means nsh refused the request before calling libslurm (`message` says why).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlurmError {
    pub code: i32,
    pub message: String,
    pub call: &'static str,
}

impl std::fmt::Display for SlurmError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} (Slurm error {})",
            self.call, self.message, self.code
        )
    }
}

impl std::error::Error for SlurmError {}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(
        "libslurm could not be loaded; tried {tried}. {}",
        if *configured { "Check the slurm-library setting in nsh.conf" }
        else { "Install Slurm's client library or set slurm-library in nsh.conf to its path (libslurm.so.N)" }
    )]
    NotFound { tried: String, configured: bool },
    #[error("{library} has no {symbol} ({detail}); slurm-library must name Slurm's libslurm.so.N")]
    Symbol {
        library: String,
        symbol: String,
        detail: String,
    },
    #[error(
        "{library} is libslurm API {api} (libslurm.so.{api}), a Slurm release this nsh does not know; \
         it supports {supported}. To add a release, generate its layout with tools/slurm-layout \
         (its README.md) and rebuild nsh"
    )]
    Unsupported {
        library: String,
        api: u32,
        supported: String,
    },
    #[error(
        "nsh's layout of Slurm {release} is unusable: {problem}; regenerate it with tools/slurm-layout"
    )]
    BadLayout {
        release: &'static str,
        problem: String,
    },
    #[error("slurm-conf {}: {problem}", path.display())]
    SlurmConf { path: PathBuf, problem: String },
    #[error(
        "libslurm was already initialised in this process ({previous}); one nsh process uses one \
         libslurm and one slurm-conf"
    )]
    AlreadyInitialised { previous: String },
}

/// An opened, initialised libslurm of a supported release.
pub struct Libslurm {
    loaded: library::Loaded,
    lock: Mutex<()>,
}

/// The words of a raw job state, as squeue spells them (e.g. ["CANCELLED", "COMPLETING"]).
pub fn state_words(lib: &Libslurm, job_state: u32) -> Vec<&'static str> {
    lib.layout().state_words(job_state)
}

fn last_errno() -> c_int {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

impl Libslurm {
    /// `library`: the `slurm-library` path, or None to try libslurm.so.N for each supported
    /// release (newest first), then libslurm.so. `slurm_conf`: None = Slurm's own lookup.
    pub fn open(library: Option<&Path>, slurm_conf: Option<&Path>) -> Result<Libslurm, LoadError> {
        Ok(Libslurm {
            loaded: library::load(library, slurm_conf)?,
            lock: Mutex::new(()),
        })
    }

    pub fn layout(&self) -> &'static Layout {
        self.loaded.layout
    }

    /// "major.minor" of the release whose layout is used.
    pub fn release(&self) -> &str {
        self.loaded.layout.release
    }

    /// The file that was loaded.
    pub fn library_path(&self) -> String {
        self.loaded.path.clone()
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Builds the error of a failed call from errno, read before anything else touches it.
    fn error(&self, call: &'static str, code: c_int) -> SlurmError {
        // SAFETY: slurm_strerror returns a static string (or strerror's) for any number.
        let message = unsafe { job_info::copy_string((self.loaded.symbols.strerror)(code)) };
        SlurmError {
            code,
            message: message.unwrap_or_else(|| "unknown error".into()),
            call,
        }
    }

    fn step_id(&self, id: u32) -> StepId24 {
        let s = &self.loaded.layout.step_id;
        let mut bytes = [0u8; 24];
        bytes.copy_from_slice(s.init);
        bytes[s.job_id.offset..s.job_id.offset + 4].copy_from_slice(&id.to_ne_bytes());
        let mut words = [0u64; 3];
        for (w, chunk) in words.iter_mut().zip(bytes.chunks_exact(8)) {
            *w = u64::from_ne_bytes(chunk.try_into().unwrap_or_default());
        }
        StepId24 { words }
    }

    /// Submits a batch job; its id.
    pub fn submit(&self, job: &JobDesc) -> Result<u32, SlurmError> {
        let call = "slurm_submit_batch_job";
        let l = self.loaded.layout;
        let sym = &self.loaded.symbols;
        let mut desc =
            job_desc::JobDescBuffer::new(l, sym.init_job_desc, job).map_err(|message| {
                SlurmError {
                    code: 0,
                    message,
                    call,
                }
            })?;
        let _g = self.guard();
        let mut resp: *mut c_void = std::ptr::null_mut();
        // SAFETY: `desc` is a job_desc_msg_t of this release whose strings live in `desc`
        // until after the call; `resp` is a valid out-pointer.
        let rc = unsafe { (sym.submit)(desc.base().cast(), &mut resp) };
        let errno = last_errno();
        let id = (rc == 0 && !resp.is_null()).then(|| {
            // SAFETY: on success resp is a submit_response_msg_t of this release.
            unsafe { job_info::read_uint(resp.cast(), l.submit_response.job_id) as u32 }
        });
        if !resp.is_null() {
            // SAFETY: resp came from slurm_submit_batch_job and is freed once, by libslurm.
            unsafe { (sym.free_submit_response)(resp) };
        }
        drop(desc);
        id.ok_or_else(|| self.error(call, if rc == 0 { 0 } else { errno }))
    }

    /// The job as slurmctld knows it; Ok(None) when it does not (ESLURM_INVALID_JOB_ID).
    pub fn load_job(&self, id: u32) -> Result<Option<JobInfo>, SlurmError> {
        let call = "slurm_load_job";
        let l = self.loaded.layout;
        let sym = &self.loaded.symbols;
        let _g = self.guard();
        let mut resp: *mut c_void = std::ptr::null_mut();
        // SAFETY: the function has the type slurm.h gives it for this release (chosen by
        // the layout); `resp` is a valid out-pointer; show_flags 0.
        let rc = unsafe {
            match sym.load_job {
                LoadJobFn::U32(f) => f(&mut resp, id, 0),
                LoadJobFn::Step(f) => f(&mut resp, self.step_id(id), 0),
            }
        };
        let errno = last_errno();
        if rc != 0 {
            if !resp.is_null() {
                // SAFETY: whatever libslurm returned is freed by libslurm, once.
                unsafe { (sym.free_job_info_msg)(resp) };
            }
            if Some(errno) == l.error("ESLURM_INVALID_JOB_ID") {
                return Ok(None);
            }
            return Err(self.error(call, errno));
        }
        if resp.is_null() {
            return Ok(None);
        }
        // SAFETY: resp is a job_info_msg_t of this release; everything is copied out
        // before it is freed (once, by libslurm).
        let job = unsafe { job_info::find_job(l, resp.cast(), id, sym.reason_string) };
        // SAFETY: as above.
        unsafe { (sym.free_job_info_msg)(resp) };
        Ok(job)
    }

    /// Sends `signal` to the job (SIGKILL/SIGTERM cancel it); errors as Slurm gives them,
    /// e.g. ESLURM_ALREADY_DONE for a finished job.
    pub fn kill_job(&self, id: u32, signal: u16) -> Result<(), SlurmError> {
        let sym = &self.loaded.symbols;
        let _g = self.guard();
        // SAFETY: the function has the type slurm.h gives it for this release; flags 0.
        let rc = unsafe {
            match sym.kill_job {
                KillJobFn::U32(f) => f(id, signal, 0),
                KillJobFn::Step(f) => f(self.step_id(id), signal, 0),
            }
        };
        if rc == 0 {
            return Ok(());
        }
        Err(self.error("slurm_kill_job", last_errno()))
    }
}
