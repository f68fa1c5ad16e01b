//! Finding and opening libslurm, its symbols, and the one `slurm_init` of the process.

use std::ffi::{CStr, CString, c_char, c_int, c_long, c_void};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use libloading::os::unix::Library;

use super::LoadError;
use crate::scheduler::slurm_native::layouts::{JobIdArg, Layout, SUPPORTED};

/// A `slurm_step_id_t` passed by value. Only its size and alignment matter to the calling
/// convention: an aggregate over 16 bytes goes in memory on x86-64 and by reference on
/// aarch64, whatever its members; `Layout` sizes are checked against it before use.
#[repr(C)]
#[derive(Clone, Copy)]
pub(super) struct StepId24 {
    pub words: [u64; 3],
}

type ApiVersionFn = unsafe extern "C" fn() -> c_long;
type InitFn = unsafe extern "C" fn(*const c_char);
pub(super) type InitJobDescFn = unsafe extern "C" fn(*mut c_void);
pub(super) type SubmitFn = unsafe extern "C" fn(*mut c_void, *mut *mut c_void) -> c_int;
pub(super) type FreeFn = unsafe extern "C" fn(*mut c_void);
pub(super) type StringOfFn = unsafe extern "C" fn(c_int) -> *const c_char;
type LoadJobU32Fn = unsafe extern "C" fn(*mut *mut c_void, u32, u16) -> c_int;
type LoadJobStepFn = unsafe extern "C" fn(*mut *mut c_void, StepId24, u16) -> c_int;
type KillJobU32Fn = unsafe extern "C" fn(u32, u16, u16) -> c_int;
type KillJobStepFn = unsafe extern "C" fn(StepId24, u16, u16) -> c_int;

pub(super) enum LoadJobFn {
    U32(LoadJobU32Fn),
    Step(LoadJobStepFn),
}

pub(super) enum KillJobFn {
    U32(KillJobU32Fn),
    Step(KillJobStepFn),
}

/// The calls nsh makes. Plain function pointers: valid for as long as the library stays
/// loaded, which is the rest of the process (`Loaded` never closes it).
pub(super) struct Symbols {
    pub init_job_desc: InitJobDescFn,
    pub submit: SubmitFn,
    pub free_submit_response: FreeFn,
    pub load_job: LoadJobFn,
    pub free_job_info_msg: FreeFn,
    pub kill_job: KillJobFn,
    pub strerror: StringOfFn,
    pub reason_string: StringOfFn,
}

pub(super) struct Loaded {
    pub path: String,
    pub layout: &'static Layout,
    pub symbols: Symbols,
}

/// Which library and slurm.conf `slurm_init` was called with; libslurm keeps one
/// configuration per process, so a second `open` must ask for the same.
static INITIALISED: Mutex<Option<(String, Option<PathBuf>)>> = Mutex::new(None);

/// The names tried when no path is configured: each supported soname, newest first.
fn default_names() -> Vec<String> {
    let mut names: Vec<String> = SUPPORTED
        .iter()
        .map(|l| format!("libslurm.so.{}", l.api_current))
        .collect();
    names.push("libslurm.so".into());
    names
}

fn dlopen(name: &str) -> Result<Library, String> {
    // SAFETY: loading runs libslurm's initialisers, which only set up its own state.
    // RTLD_GLOBAL: the auth/hash plugins libslurm dlopens resolve symbols from it.
    unsafe { Library::open(Some(name), libc::RTLD_NOW | libc::RTLD_GLOBAL) }
        .map_err(|e| e.to_string())
}

fn open_library(library: Option<&Path>) -> Result<Library, LoadError> {
    let names = match library {
        Some(p) => vec![p.to_string_lossy().into_owned()],
        None => default_names(),
    };
    let mut tried = Vec::new();
    for name in &names {
        match dlopen(name) {
            Ok(lib) => return Ok(lib),
            Err(e) => tried.push(format!("{name} ({e})")),
        }
    }
    Err(LoadError::NotFound {
        tried: tried.join("; "),
        configured: library.is_some(),
    })
}

fn symbol<T: Copy>(lib: &Library, path: &str, name: &str) -> Result<T, LoadError> {
    let mut cname = name.as_bytes().to_vec();
    cname.push(0);
    // SAFETY: every T used here is the function type slurm.h declares for `name` in the
    // releases nsh supports (the layout was chosen by API number before any call).
    let sym = unsafe { lib.get::<T>(&cname) };
    sym.map(|s| *s).map_err(|e| LoadError::Symbol {
        library: path.into(),
        symbol: name.into(),
        detail: e.to_string(),
    })
}

/// The file the dynamic linker actually loaded, found from one of its functions.
fn loaded_path(f: ApiVersionFn, asked: &str) -> String {
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: dladdr only reads the loader's tables; `info` is a valid out-pointer.
    let found = unsafe { libc::dladdr(f as *const c_void, &mut info) } != 0;
    if !found || info.dli_fname.is_null() {
        return asked.into();
    }
    // SAFETY: dli_fname is a NUL-terminated path owned by the loader for the life of the
    // mapping, which is the rest of the process.
    unsafe { CStr::from_ptr(info.dli_fname) }
        .to_string_lossy()
        .into_owned()
}

fn pick_layout(path: &str, api: c_long) -> Result<&'static Layout, LoadError> {
    // SLURM_API_VERSION is current << 16 | age << 8 | revision.
    let current = u32::try_from((api >> 16) & 0xff).unwrap_or(0);
    let layout = SUPPORTED
        .iter()
        .find(|l| l.api_current == current)
        .ok_or_else(|| LoadError::Unsupported {
            library: path.into(),
            api: current,
            supported: supported_list(),
        })?;
    layout.check().map_err(|problem| LoadError::BadLayout {
        release: layout.release,
        problem,
    })?;
    // The by-value argument must have the size of the Rust type passed in its place.
    let by_value = layout.load_job_takes == JobIdArg::StepIdByValue
        || layout.kill_job_takes == JobIdArg::StepIdByValue;
    if by_value && (layout.step_id.size != 24 || layout.step_id.align != 8) {
        return Err(LoadError::BadLayout {
            release: layout.release,
            problem: format!(
                "slurm_step_id_t has {} bytes (align {}); nsh passes 24 (align 8) by value",
                layout.step_id.size, layout.step_id.align
            ),
        });
    }
    Ok(layout)
}

pub(super) fn supported_list() -> String {
    let r: Vec<String> = SUPPORTED
        .iter()
        .map(|l| format!("{} (libslurm.so.{})", l.release, l.api_current))
        .collect();
    r.join(", ")
}

fn symbols(lib: &Library, path: &str, layout: &Layout) -> Result<Symbols, LoadError> {
    let load_job = match layout.load_job_takes {
        JobIdArg::U32 => LoadJobFn::U32(symbol(lib, path, "slurm_load_job")?),
        JobIdArg::StepIdByValue => LoadJobFn::Step(symbol(lib, path, "slurm_load_job")?),
    };
    let kill_job = match layout.kill_job_takes {
        JobIdArg::U32 => KillJobFn::U32(symbol(lib, path, "slurm_kill_job")?),
        JobIdArg::StepIdByValue => KillJobFn::Step(symbol(lib, path, "slurm_kill_job")?),
    };
    // Renamed in 23.02-ish; both take the enum job_state_reason value.
    let reason_string = symbol(lib, path, "slurm_job_state_reason_string")
        .or_else(|_| symbol(lib, path, "slurm_job_reason_string"))?;
    Ok(Symbols {
        init_job_desc: symbol(lib, path, "slurm_init_job_desc_msg")?,
        submit: symbol(lib, path, "slurm_submit_batch_job")?,
        free_submit_response: symbol(lib, path, "slurm_free_submit_response_response_msg")?,
        load_job,
        free_job_info_msg: symbol(lib, path, "slurm_free_job_info_msg")?,
        kill_job,
        strerror: symbol(lib, path, "slurm_strerror")?,
        reason_string,
    })
}

/// libslurm's slurm_init exits the process on a configuration it cannot read, so an
/// explicit path is checked first.
fn check_conf(conf: &Path) -> Result<CString, LoadError> {
    let bad = |problem: String| LoadError::SlurmConf {
        path: conf.to_path_buf(),
        problem,
    };
    let meta = std::fs::metadata(conf).map_err(|e| bad(e.to_string()))?;
    if !meta.is_file() {
        return Err(bad("not a regular file".into()));
    }
    std::fs::File::open(conf).map_err(|e| bad(format!("cannot be read: {e}")))?;
    use std::os::unix::ffi::OsStrExt;
    CString::new(conf.as_os_str().as_bytes()).map_err(|_| bad("contains a NUL byte".into()))
}

fn init_once(lib: &Library, path: &str, conf: Option<&Path>) -> Result<(), LoadError> {
    let conf_c = conf.map(check_conf).transpose()?;
    let mut done = INITIALISED.lock().unwrap_or_else(|p| p.into_inner());
    let wanted = (path.to_string(), conf.map(Path::to_path_buf));
    if let Some(previous) = done.as_ref() {
        if *previous == wanted {
            return Ok(());
        }
        return Err(LoadError::AlreadyInitialised {
            previous: format!("{} with slurm.conf {:?}", previous.0, previous.1),
        });
    }
    let init: InitFn = symbol(lib, path, "slurm_init")?;
    let arg = conf_c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
    // SAFETY: slurm_init(const char *conf or NULL) is called once per process (guarded by
    // INITIALISED); `arg` outlives the call.
    unsafe { init(arg) };
    *done = Some(wanted);
    Ok(())
}

pub(super) fn load(library: Option<&Path>, conf: Option<&Path>) -> Result<Loaded, LoadError> {
    let lib = open_library(library)?;
    let asked = library.map_or_else(|| "libslurm".to_string(), |p| p.display().to_string());
    let api_version: ApiVersionFn = symbol(&lib, &asked, "slurm_api_version")?;
    let path = loaded_path(api_version, &asked);
    // SAFETY: slurm_api_version(void) returns a number and needs no initialisation.
    let layout = pick_layout(&path, unsafe { api_version() })?;
    let symbols = symbols(&lib, &path, layout)?;
    init_once(&lib, &path, conf)?;
    // Never unloaded: libslurm has loaded plugins that point into it.
    std::mem::forget(lib);
    Ok(Loaded {
        path,
        layout,
        symbols,
    })
}
