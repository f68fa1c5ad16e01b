//! `nsh-remote serve`: the agent's process-wide state, the socket, the lease and signals.
//!
//! The lease (docs/architecture.md, "Lease"): the agent must end its job on its own when nsh
//! is gone, even if the cluster API cannot be reached to cancel it. Every frame a client
//! sends renews the lease, and so does opening or closing a connection; when it has not
//! been renewed for `lease` the agent stops the build, removes its directory and exits
//! with 75. The session's reader reads every frame at once, whatever the worker waits on,
//! so the lease follows the client's liveness.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::build::Build;
use crate::daemon::{Early, Queries};
use crate::log::log;
use crate::nix::{NixStore, TOKEN_ENV};
use crate::procs::Children;
use crate::session;
use crate::store_lock::{StoreLocks, lock_dir};

/// Exit status when the lease ran out (EX_TEMPFAIL).
pub const EXIT_LEASE: i32 = 75;
/// Exit status after SIGTERM/SIGINT, as a shell reports a SIGTERM death.
pub const EXIT_SIGNAL: i32 = 143;
pub const SOCKET_NAME: &str = "agent.sock";

pub struct ServeOptions {
    pub dir: PathBuf,
    pub store: String,
    pub nix_bin_dir: Option<PathBuf>,
    pub lease: Duration,
}

pub struct Agent {
    pub dir: PathBuf,
    pub nix: NixStore,
    /// The store as configured (`auto` or a URL/path), reported in `Hello`.
    pub store: String,
    pub hostname: String,
    pub nix_version: String,
    pub children: Arc<Children>,
    /// The Nix daemon connection for queries, and the one kept for the first import, both
    /// opened when the agent starts (`daemon.rs`).
    pub queries: Queries,
    pub first_import: Early,
    /// The upload and GC locks of the store this agent uses (see `store_lock.rs`).
    pub locks: StoreLocks,
    token: String,
    pub lease: Duration,
    state: Mutex<State>,
    next_conn: AtomicU64,
    exiting: AtomicBool,
}

pub struct State {
    last_activity: Instant,
    /// The authenticated connection being served, to shut down when another takes over.
    current: Option<(u64, UnixStream)>,
    pub build: Option<Arc<Build>>,
}

static SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    SIGNAL.store(sig, Ordering::SeqCst);
}

fn install_signal_handlers() {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(
                sig,
                on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
            );
        }
    }
}

pub fn hostname() -> String {
    if let Ok(h) = fs::read_to_string("/proc/sys/kernel/hostname") {
        let h = h.trim();
        if !h.is_empty() {
            return h.to_owned();
        }
    }
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it
    // (we keep the last byte 0 in any case).
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) };
    if rc != 0 {
        return "unknown".to_owned();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(0);
    String::from_utf8_lossy(buf.get(..end).unwrap_or_default()).into_owned()
}

/// Creates `dir` (0700) if needed and refuses one that others could write or that belongs
/// to someone else.
pub fn prepare_dir(dir: &Path) -> Result<()> {
    match fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        Ok(()) => {}
        Err(e) => return Err(e).with_context(|| format!("creating {}", dir.display())),
    }
    let meta =
        fs::symlink_metadata(dir).with_context(|| format!("inspecting {}", dir.display()))?;
    if !meta.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    if meta.uid() != uid {
        bail!(
            "{} belongs to uid {}, not to this user (uid {uid})",
            dir.display(),
            meta.uid()
        );
    }
    if meta.mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("making {} private (0700)", dir.display()))?;
    }
    Ok(())
}

/// Constant-time comparison of the client's token with ours (through sha256, so the
/// length does not leak either).
pub fn token_matches(ours: &str, offered: &str) -> bool {
    use sha2::{Digest, Sha256};
    let a = Sha256::digest(offered.as_bytes());
    let b = Sha256::digest(ours.as_bytes());
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// The SIGTERM/SIGINT received so far (0: none).
pub fn pending_signal() -> i32 {
    SIGNAL.load(Ordering::SeqCst)
}

impl Agent {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Renews the lease.
    pub fn touch(&self) {
        self.lock().last_activity = Instant::now();
    }

    pub fn new_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    pub fn token_matches(&self, offered: &str) -> bool {
        token_matches(&self.token, offered)
    }

    /// Makes `conn` the connection being served; an earlier one is shut down (its client
    /// evidently reconnected).
    pub fn make_current(&self, conn: u64, stream: &UnixStream) {
        let clone = stream.try_clone().ok();
        let mut st = self.lock();
        if let Some((old, s)) = st.current.take() {
            log!("connection {conn} replaces connection {old}");
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        st.current = clone.map(|c| (conn, c));
        st.last_activity = Instant::now();
    }

    pub fn connection_closed(&self, conn: u64) {
        let mut st = self.lock();
        if st.current.as_ref().is_some_and(|(c, _)| *c == conn) {
            st.current = None;
        }
        st.last_activity = Instant::now();
    }

    /// Marks the agent as leaving for good: the lease no longer applies and no further
    /// request is served.
    pub fn begin_exit(&self) {
        self.exiting.store(true, Ordering::SeqCst);
    }

    pub fn is_exiting(&self) -> bool {
        self.exiting.load(Ordering::SeqCst)
    }

    /// Stops every child, removes the directory and exits.
    pub fn shutdown(&self, why: &str, code: i32) -> ! {
        self.begin_exit();
        log!("shutting down: {why}");
        if let Some((_, s)) = self.lock().current.take() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        self.children.terminate_all();
        self.remove_dir();
        log!("exit {code}");
        std::process::exit(code)
    }

    pub fn remove_dir(&self) {
        match fs::remove_dir_all(&self.dir) {
            Ok(()) => log!("removed {}", self.dir.display()),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => log!("removing {}: {e}", self.dir.display()),
        }
    }

    fn watch(self: Arc<Self>) {
        loop {
            thread::sleep(Duration::from_millis(100));
            let sig = SIGNAL.load(Ordering::SeqCst);
            if sig != 0 {
                let name = if sig == libc::SIGINT {
                    "SIGINT"
                } else {
                    "SIGTERM"
                };
                self.shutdown(&format!("received {name} (job cancelled?)"), EXIT_SIGNAL);
            }
            if self.exiting.load(Ordering::SeqCst) {
                continue;
            }
            let (idle, connected) = {
                let st = self.lock();
                (st.last_activity.elapsed(), st.current.is_some())
            };
            if idle > self.lease {
                let why = if connected {
                    format!(
                        "lease expired: the client has been silent for {} s",
                        idle.as_secs()
                    )
                } else {
                    format!(
                        "lease expired: no client connected for {} s",
                        idle.as_secs()
                    )
                };
                self.shutdown(&why, EXIT_LEASE);
            }
        }
    }
}

pub fn run(opts: ServeOptions) -> Result<()> {
    // SAFETY: umask only changes this process's file creation mask.
    unsafe {
        libc::umask(0o077);
    }
    let token = take_token()?;
    crate::timing::begin();
    install_signal_handlers();
    // A Nix that cannot start is reported to the client over the socket (below), with
    // its own error: otherwise the client sees only a closed connection. The daemon
    // connections open while `nix-store --version` runs (under load each takes ~100 ms).
    let children = Arc::new(Children::default());
    let nix = NixStore::locate(opts.nix_bin_dir.as_deref(), &opts.store)
        .map(|nix| {
            let daemons = (Queries::start(&nix, &children), Early::spawn(&nix));
            (nix, daemons)
        })
        .and_then(|(nix, daemons)| nix.version().map(|v| (nix, v, daemons)));
    crate::timing::mark("nix found");
    prepare_dir(&opts.dir)?;
    #[cfg(feature = "fault-injection")]
    crate::fault::set_job_dir(&opts.dir);
    #[cfg(feature = "fault-injection")]
    let opts = ServeOptions {
        lease: crate::fault::lease(opts.lease),
        ..opts
    };
    // The job dir is `<state>/jobs/<key>` (job_script.rs in nsh-local).
    let state_dir = opts
        .dir
        .parent()
        .and_then(Path::parent)
        .unwrap_or(&opts.dir)
        .to_path_buf();
    let host = hostname();
    let locks = StoreLocks::new(lock_dir(&state_dir, &host, &opts.store));
    let sock = opts.dir.join(SOCKET_NAME);
    let listener = bind_private(&sock)?;
    let (nix, nix_version, (queries, first_import)) = match nix {
        Ok(n) => n,
        Err(e) => crate::refuse::serve(listener, &opts.dir, &token, &e, opts.lease),
    };
    let agent = Arc::new(Agent {
        dir: opts.dir.clone(),
        queries,
        first_import,
        nix,
        store: opts.store.clone(),
        hostname: host,
        nix_version,
        children,
        locks,
        token,
        lease: opts.lease,
        state: Mutex::new(State {
            last_activity: Instant::now(),
            current: None,
            build: None,
        }),
        next_conn: AtomicU64::new(1),
        exiting: AtomicBool::new(false),
    });
    log!(
        "serving on {} (host {}, {}, store {}, lease {} ms, store locks in {})",
        sock.display(),
        agent.hostname,
        agent.nix_version,
        agent.store,
        opts.lease.as_millis(),
        agent.locks.dir().display()
    );
    crate::timing::mark("serving");
    let a = Arc::clone(&agent);
    thread::spawn(move || a.watch());
    accept_loop(&agent, &listener);
    Ok(())
}

/// The per-job token from the environment, removed from it so no child inherits it.
fn take_token() -> Result<String> {
    let token = std::env::var(TOKEN_ENV)
        .ok()
        .filter(|t| !t.is_empty())
        .with_context(|| {
            format!("{TOKEN_ENV} is not set: the job script must export the per-job token")
        })?;
    // SAFETY: no other thread exists yet, so nothing reads the environment concurrently.
    unsafe {
        std::env::remove_var(TOKEN_ENV);
    }
    Ok(token)
}

/// The agent's socket at `sock` (a stale one from an earlier run removed), mode 0600.
fn bind_private(sock: &Path) -> Result<UnixListener> {
    match fs::remove_file(sock) {
        Ok(()) => log!("removed stale {}", sock.display()),
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing stale {}", sock.display())),
    }
    let listener =
        UnixListener::bind(sock).with_context(|| format!("binding {}", sock.display()))?;
    fs::set_permissions(sock, fs::Permissions::from_mode(0o600))
        .with_context(|| format!("chmod 0600 {}", sock.display()))?;
    Ok(listener)
}

/// Serves each connection on its own thread, until the process exits (the watchdog, a
/// goodbye or a signal ends it).
fn accept_loop(agent: &Arc<Agent>, listener: &UnixListener) {
    for stream in listener.incoming() {
        match stream {
            Ok(s) => {
                let a = Arc::clone(agent);
                let id = agent.new_conn_id();
                thread::spawn(move || session::serve(a, s, id));
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                log!("accept failed: {e}");
                thread::sleep(Duration::from_millis(100));
            }
        }
    }
}
