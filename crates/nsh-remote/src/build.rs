//! The one build of this job: `nix-store --realise` with `--log-format internal-json`, its
//! log split from Nix's own messages, and a backlog that outlives disconnections.
//!
//! With `--log-format internal-json` every stderr line of `nix-store` is `@nix {json}`:
//! builder output is `{"action":"result","type":101,"fields":["<line>"]}` (107 for
//! post-build hook lines), Nix's messages are `{"action":"msg","level":N,"msg":"…"}`
//! (`libmain/loggers.cc`, `JSONLogger`, same shape from Nix 2.8 to 2.34). Lines without the
//! prefix (printed before the logger is set up, or by a wrapper) are passed on as log.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nsh_wire::agent_protocol::{BuildRequest, BuildResult, CHUNK_SIZE};
use nsh_wire::log_message::{self, Line, LogMessage};

use crate::log::log;
use crate::nix::check_path_arg;
use crate::procs::ChildGuard;
use crate::serve::Agent;
use crate::{job_cpus, kept_build};

/// Log kept for a client that is away; older lines are dropped first.
pub const MAX_BACKLOG: usize = 1 << 20;
/// A log frame is sent once this much is pending, or after [`COALESCE`].
pub const COALESCE_BYTES: usize = 64 << 10;
pub const COALESCE: Duration = Duration::from_millis(50);
/// Longest single log line passed on; Nix itself has no limit, a frame does.
const MAX_LINE: usize = 64 << 10;
/// Error messages kept for `BuildResult::message`.
const MAX_ERRORS: usize = 20;

/// One line of `nix-store`'s stderr, classified.
#[derive(Debug, PartialEq, Eq)]
pub enum StderrLine {
    /// Builder output (or a line that is not Nix's JSON): goes to the client's log.
    Log(String),
    /// A message of Nix itself, with its verbosity level (0 = error, 1 = warning, …).
    Msg { level: u64, text: String },
    /// Activity bookkeeping (start/stop, progress) that the client does not need.
    Ignore,
}

/// Classifies one stderr line (without its newline).
pub fn parse_stderr_line(line: &str) -> StderrLine {
    match log_message::parse_line(line) {
        Line::Plain => StderrLine::Log(line.to_owned()),
        Line::Message(LogMessage::Msg { level, msg }) => StderrLine::Msg {
            level: level.into(),
            text: msg,
        },
        Line::Message(m) => match m.build_log_text() {
            Some(text) => StderrLine::Log(text.to_owned()),
            None => StderrLine::Ignore,
        },
        Line::Other => StderrLine::Ignore,
    }
}

/// `nix-store --realise` arguments (after `[--store S]`) for a request. `root` becomes a
/// GC root for the outputs (in the agent's directory, so it goes when the agent does):
/// nothing else keeps them alive between the build and their transfer. `build_hook`
/// (see [`NixStore::build_hook`]) is passed as `--option build-hook`.
pub fn realise_args(
    req: &BuildRequest,
    root: &Path,
    build_hook: Option<&Path>,
    cores: u32,
) -> Result<Vec<String>> {
    check_path_arg(&req.drv_path)?;
    let mut target = req.drv_path.clone();
    if !req.outputs.is_empty() {
        for o in &req.outputs {
            if o.is_empty()
                || !o
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+-._?=".contains(&b))
            {
                bail!("refusing output name {o:?}");
            }
        }
        target = format!("{target}!{}", req.outputs.join(","));
    }
    let root = root.to_str().context("agent directory is not UTF-8")?;
    let mut args: Vec<String> = [
        "--realise",
        &target,
        "--add-root",
        root,
        "--log-format",
        "internal-json",
    ]
    .map(str::to_owned)
    .into();
    for (name, value) in &req.options {
        if name.is_empty() || name.starts_with('-') || name.contains(['\0', ' ', '\n']) {
            bail!("refusing option name {name:?}");
        }
        if value.contains('\0') {
            bail!("refusing value of option {name}: contains NUL");
        }
        args.extend(["--option".to_owned(), name.clone(), value.clone()]);
    }
    args.extend(["--option".to_owned(), "cores".to_owned(), cores.to_string()]);
    if req.keep_failed {
        args.extend(["--option", "keep-failed", "true"].map(str::to_owned));
    }
    if let Some(hook) = build_hook {
        let hook = hook.to_str().context("build hook path is not UTF-8")?;
        args.extend(["--option", "build-hook", hook].map(str::to_owned));
    }
    Ok(args)
}

struct State {
    /// The last [`MAX_BACKLOG`] bytes of the log (whole lines), kept after they were sent:
    /// a client that reconnects says how much it has and gets the rest again.
    log: VecDeque<u8>,
    /// Offset of `log[0]` in the whole log.
    log_start: u64,
    /// Offset up to which the attached connection has been given the log.
    cursor: u64,
    /// Connection id that receives the log; 0 = nobody.
    attached: u64,
    errors: VecDeque<String>,
    result: Option<BuildResult>,
    /// The directory Nix said it keeps (`keep-failed`).
    kept_dir: Option<String>,
}

/// A running or finished realise.
pub struct Build {
    pub drv_path: String,
    state: Mutex<State>,
    changed: Condvar,
}

/// What a streaming client gets next.
pub enum Next {
    Log(Vec<u8>),
    /// Bytes of log the client missed that are no longer kept.
    Gap(u64),
    Done(BuildResult),
    /// Another connection took over the log.
    Detached,
    Idle,
}

impl Build {
    /// A build of `drv_path` with no log and no result yet.
    fn idle(drv_path: String) -> Build {
        Build {
            drv_path,
            state: Mutex::new(State {
                log: VecDeque::new(),
                log_start: 0,
                cursor: 0,
                attached: 0,
                errors: VecDeque::new(),
                result: None,
                kept_dir: None,
            }),
            changed: Condvar::new(),
        }
    }

    /// Spawns `nix-store --realise` and the threads that read it.
    pub fn start(agent: &Agent, req: &BuildRequest) -> Result<Arc<Build>> {
        let (nix, children) = (&agent.nix, &agent.children);
        let root = &agent.dir.join("result");
        let cores = job_cpus::for_this_job(req.cores, &agent.hostname);
        let mut args = realise_args(req, root, nix.build_hook(), cores.cores)?;
        let mut cmd = nix.command();
        if req.keep_failed {
            kept_build::direct(&mut cmd, &mut args, agent);
        }
        log!(
            "starting build: {} {}",
            nix.program().display(),
            args.join(" ")
        );
        let mut child = cmd
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("spawning {}", nix.program().display()))?;
        crate::timing::mark("realise started");
        let pid = child.id() as i32;
        let guard = ChildGuard::new(children, pid);
        let stdout = child.stdout.take().context("realise stdout")?;
        let stderr = child.stderr.take().context("realise stderr")?;
        let build = Arc::new(Build::idle(req.drv_path.clone()));
        build.push_log(&cores.message);
        let root = root.to_owned();
        let out_thread = thread::spawn(move || read_outputs(stdout, &root));
        let b = Arc::clone(&build);
        let err_thread = thread::spawn(move || b.read_stderr(stderr));
        let b = Arc::clone(&build);
        thread::spawn(move || {
            let outputs = out_thread.join().unwrap_or_default();
            // A panic in the reader only loses log lines; the exit status still counts.
            let _ = err_thread.join();
            let status = match child.wait() {
                Ok(s) => s,
                Err(e) => {
                    log!("waiting for realise: {e}");
                    b.finish(
                        -1,
                        format!("agent could not wait for nix-store: {e}"),
                        vec![],
                    );
                    return;
                }
            };
            drop(guard);
            crate::timing::mark("realise ended");
            let code = exit_code(status);
            log!("build of {} ended: {status}", b.drv_path);
            let message = b.error_tail();
            let outputs = if code == 0 { outputs } else { vec![] };
            b.finish(code, message, outputs);
        });
        Ok(build)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn read_stderr(&self, stderr: impl Read) {
        let mut r = BufReader::new(stderr);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) => {
                    log!("reading realise stderr: {e}");
                    return;
                }
            }
            let line = String::from_utf8_lossy(&buf);
            let line = line.trim_end_matches(['\n', '\r']);
            match parse_stderr_line(line) {
                StderrLine::Log(text) => self.push_log(&text),
                StderrLine::Msg { level, text } => {
                    log!("nix: {text}");
                    if let Some(dir) = kept_build::parse_kept(&text) {
                        self.lock().kept_dir = Some(dir);
                    }
                    if level == 0 {
                        self.push_error(text);
                    }
                }
                StderrLine::Ignore => {}
            }
        }
    }

    fn push_log(&self, text: &str) {
        let mut cut = text.len().min(MAX_LINE);
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        let mut st = self.lock();
        st.log
            .extend(text.as_bytes().get(..cut).unwrap_or_default());
        st.log.push_back(b'\n');
        if st.log.len() > MAX_BACKLOG {
            let excess = st.log.len() - MAX_BACKLOG;
            // Cut at a line end so the client never sees half a line.
            let end = st
                .log
                .iter()
                .skip(excess)
                .position(|&b| b == b'\n')
                .map_or(st.log.len(), |p| excess + p + 1);
            st.log.drain(..end);
            st.log_start += end as u64;
        }
        if st.unsent() >= COALESCE_BYTES as u64 {
            self.changed.notify_all();
        }
    }

    fn push_error(&self, text: String) {
        let mut st = self.lock();
        st.errors.push_back(text);
        if st.errors.len() > MAX_ERRORS {
            st.errors.pop_front();
        }
    }

    fn error_tail(&self) -> String {
        let st = self.lock();
        let all: Vec<&str> = st.errors.iter().map(String::as_str).collect();
        let joined = all.join("\n");
        let start = joined.len().saturating_sub(8192);
        let start = (start..joined.len())
            .find(|&i| joined.is_char_boundary(i))
            .unwrap_or(0);
        joined.get(start..).unwrap_or_default().to_owned()
    }

    fn finish(&self, status: i32, message: String, outputs: Vec<String>) {
        let mut st = self.lock();
        let kept_dir = st.kept_dir.take();
        st.result = Some(BuildResult {
            status,
            message,
            outputs,
            kept_dir,
        });
        self.changed.notify_all();
    }

    /// Whether `nix-store --realise` has exited.
    pub fn result(&self) -> Option<BuildResult> {
        self.lock().result.clone()
    }

    /// Makes `conn` the receiver of the log (replacing any other), from offset `from`.
    pub fn attach(&self, conn: u64, from: u64) {
        let mut st = self.lock();
        st.attached = conn;
        st.cursor = from.min(st.log_end());
        self.changed.notify_all();
    }

    pub fn detach(&self, conn: u64) {
        let mut st = self.lock();
        if st.attached == conn {
            st.attached = 0;
        }
    }

    /// Waits up to [`COALESCE`] for log to send, then returns the next step for `conn`.
    /// The result comes only after the whole log.
    pub fn next(&self, conn: u64) -> Next {
        let st = self.lock();
        let (mut st, _) = self
            .changed
            .wait_timeout_while(st, COALESCE, |s| {
                s.attached == conn && s.result.is_none() && s.unsent() < COALESCE_BYTES as u64
            })
            .unwrap_or_else(|p| p.into_inner());
        if st.attached != conn {
            return Next::Detached;
        }
        if st.cursor < st.log_start {
            let gap = st.log_start - st.cursor;
            st.cursor = st.log_start;
            return Next::Gap(gap);
        }
        if st.unsent() > 0 {
            let from = usize::try_from(st.cursor - st.log_start).unwrap_or(usize::MAX);
            let avail = st.log.len().saturating_sub(from);
            let mut take = avail.min(CHUNK_SIZE);
            if take < avail {
                // Whole lines only; a line is at most MAX_LINE, far below CHUNK_SIZE.
                take = st
                    .log
                    .iter()
                    .skip(from)
                    .take(take)
                    .rposition(|&b| b == b'\n')
                    .map_or(take, |p| p + 1);
            }
            let out: Vec<u8> = st.log.iter().skip(from).take(take).copied().collect();
            st.cursor += take as u64;
            return Next::Log(out);
        }
        match &st.result {
            Some(r) => Next::Done(r.clone()),
            None => Next::Idle,
        }
    }
}

impl State {
    fn log_end(&self) -> u64 {
        self.log_start + self.log.len() as u64
    }

    /// Log bytes the attached client has not been given.
    fn unsent(&self) -> u64 {
        self.log_end()
            .saturating_sub(self.cursor.max(self.log_start))
    }
}

/// The store paths `nix-store --realise --add-root R` printed. With `--add-root` it prints
/// the root symlinks (`R`, `R-dev`, …), not the outputs (seen on Nix 2.34), so those are
/// resolved to their targets, which are store paths also for a chroot store.
fn read_outputs(stdout: impl Read, root: &Path) -> Vec<String> {
    BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .map(|l| l.trim().to_owned())
        .filter(|l| l.starts_with('/'))
        .filter_map(|l| resolve_root(&l, root))
        .collect()
}

fn resolve_root(printed: &str, root: &Path) -> Option<String> {
    let dir = root.parent()?;
    if !Path::new(printed).starts_with(dir) {
        return Some(printed.to_owned());
    }
    match std::fs::read_link(printed) {
        Ok(target) => target.to_str().map(str::to_owned),
        Err(e) => {
            log!("reading GC root {printed}: {e}");
            None
        }
    }
}

/// Exit code, or 128 + signal number as a shell reports it.
pub fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(-1)
}

#[cfg(test)]
#[path = "build_tests.rs"]
mod tests;
