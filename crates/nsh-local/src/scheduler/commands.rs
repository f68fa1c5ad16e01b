//! The scheduler's own commands (`qsub`, `qstat`, `qdel`; later `sbatch`…), run on this
//! machine or on a login host over SSH (`login-host`), for the backends that drive a
//! scheduler through its command-line clients.
//!
//! Sites often install the clients only on login nodes, so `login-host` runs every command
//! there through nsh's SSH pool: the user's ssh config, one shared ControlMaster per few
//! builds, one channel per command (never a connection per poll). Arguments are quoted for
//! the remote shell by nsh itself ([`remote_line`]); none may hold a control character, so a
//! value can never end the command line or start another. `scheduler-bin-dir` names the
//! directory of the commands (sites put them in `/opt/pbs/bin`, which a non-interactive SSH
//! session or nix-daemon's environment often lacks on PATH).

use std::time::Duration;

use anyhow::{Context, Result};

use super::job_user::JobUser;
use crate::job_script::sh_quote;

/// Longest a command may take: a scheduler that does not answer a `qstat` in this time is
/// treated as unreachable (transient), not waited for.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// One command to run.
#[derive(Debug, Clone)]
pub struct Invocation<'a> {
    /// The command's name (`qsub`); looked up in `scheduler-bin-dir`, else on PATH.
    pub program: &'a str,
    pub args: &'a [String],
    /// Set for the command only (`PBS_SERVER`…).
    pub env: &'a [(String, String)],
    /// Written to the command's stdin, which is then closed; `None`: empty stdin.
    pub stdin: Option<&'a [u8]>,
    /// Instead of stdin: `stdin` is written to a private temporary file (on the host the
    /// command runs on) whose path is passed as the last argument, and removed afterwards
    /// (`qsub` of Torque wants a script file, not stdin).
    pub stdin_as_file: bool,
}

/// What a command printed and how it ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandOutput {
    /// Exit status; `None` if it was killed by a signal.
    pub status: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl CommandOutput {
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }

    /// Stdout as text (lossy), for parsers.
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Stderr as one printable line for messages: control characters shown as `?`, cut to
    /// 300 characters (the cluster's words are untrusted).
    pub fn stderr_line(&self) -> String {
        printable(&String::from_utf8_lossy(&self.stderr))
    }
}

/// A command that could not be run at all (as opposed to one that ran and failed).
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The login host could not be reached, or the command did not answer in time: trying
    /// again later may work.
    #[error("{0}")]
    Unreachable(String),
    /// The command does not exist there (exit 127 from the remote shell, or not found here).
    #[error("{0}")]
    NotFound(String),
    /// A name or argument nsh refuses to pass (control characters): a bug or hostile input.
    #[error("{0}")]
    BadArgument(String),
}

impl CommandError {
    /// What the hook makes of it: an unreachable host or a command that did not answer may
    /// work later; a missing command or a refused argument will not.
    pub fn kind(&self) -> super::ErrorKind {
        match self {
            CommandError::Unreachable(_) => super::ErrorKind::Transient,
            CommandError::NotFound(_) | CommandError::BadArgument(_) => super::ErrorKind::Other,
        }
    }
}

/// Runs the scheduler's commands somewhere. The backends take any implementation, so their
/// unit tests can answer with captured output.
pub trait RunCommand: Send + Sync {
    fn run(
        &self,
        inv: Invocation<'_>,
    ) -> impl Future<Output = Result<CommandOutput, CommandError>> + Send;

    /// Where the commands run, for messages (`on this machine`, `on login host login1`).
    fn describe(&self) -> String;
}

/// The commands as `login-host` and `scheduler-bin-dir` say.
#[allow(clippy::large_enum_variant)] // one per process
pub enum Commands {
    Local {
        bin_dir: Option<String>,
        /// Run every command as this user (`job-user`, for a root hook), so the jobs it
        /// submits are that user's.
        run_as: Option<JobUser>,
    },
    Login {
        host: String,
        bin_dir: Option<String>,
        pool: crate::ssh::SshPool,
        /// This process's slot on the login host's masters, taken at the first command.
        slot: tokio::sync::Mutex<Option<crate::ssh::Slot>>,
    },
}

impl Commands {
    pub fn new(
        login_host: Option<&str>,
        bin_dir: Option<&str>,
        run_as: Option<JobUser>,
    ) -> Result<Commands> {
        let bin_dir = bin_dir.map(str::to_owned);
        Ok(match login_host {
            None => Commands::Local { bin_dir, run_as },
            Some(host) => {
                crate::scheduler::check_host_name(host)
                    .map_err(|why| anyhow::anyhow!("login-host {why}"))?;
                let runtime = crate::runtime_dir::runtime_dir()?;
                Commands::Login {
                    host: host.to_owned(),
                    bin_dir,
                    pool: crate::ssh::SshPool::new(&runtime)?,
                    slot: tokio::sync::Mutex::new(None),
                }
            }
        })
    }
}

impl RunCommand for Commands {
    async fn run(&self, inv: Invocation<'_>) -> Result<CommandOutput, CommandError> {
        check_invocation(&inv)?;
        match self {
            Commands::Local { bin_dir, run_as } => {
                run_local(bin_dir.as_deref(), run_as.as_ref(), &inv).await
            }
            Commands::Login {
                host,
                bin_dir,
                pool,
                slot,
            } => {
                let line = remote_line(bin_dir.as_deref(), &inv);
                run_remote(host, pool, slot, &line, inv.stdin).await
            }
        }
    }

    fn describe(&self) -> String {
        match self {
            Commands::Local { run_as: None, .. } => "on this machine".into(),
            Commands::Local {
                run_as: Some(user), ..
            } => format!("on this machine as {}", user.name),
            Commands::Login { host, .. } => format!("on login host {host}"),
        }
    }
}

fn check_invocation(inv: &Invocation<'_>) -> Result<(), CommandError> {
    let bad = |what: &str, s: &str| {
        CommandError::BadArgument(format!(
            "refusing to run {}: its {what} {} holds a control character or NUL",
            inv.program,
            printable(s)
        ))
    };
    if inv.program.is_empty() || inv.program.contains(['/', ' ']) {
        return Err(bad("name", inv.program));
    }
    for a in inv.args {
        if a.chars().any(char::is_control) {
            return Err(bad("argument", a));
        }
    }
    for (k, v) in inv.env {
        let name_ok = !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !name_ok || v.chars().any(char::is_control) {
            return Err(bad("environment", k));
        }
    }
    Ok(())
}

fn program_path(bin_dir: Option<&str>, program: &str) -> String {
    match bin_dir {
        Some(dir) => format!("{}/{program}", dir.trim_end_matches('/')),
        None => program.to_owned(),
    }
}

async fn run_local(
    bin_dir: Option<&str>,
    run_as: Option<&JobUser>,
    inv: &Invocation<'_>,
) -> Result<CommandOutput, CommandError> {
    if !inv.stdin_as_file {
        return run_local_with(bin_dir, run_as, inv, None).await;
    }
    let file = tempfile::Builder::new()
        .prefix("nsh-script-")
        .tempfile_in(crate::runtime_dir::runtime_dir().map_err(|e| {
            CommandError::Unreachable(format!("no private directory for the job script: {e:#}"))
        })?)
        .and_then(|mut f| {
            std::io::Write::write_all(&mut f, inv.stdin.unwrap_or_default())?;
            Ok(f)
        })
        .map_err(|e| CommandError::Unreachable(format!("cannot write the job script: {e}")))?;
    if let Some(user) = run_as {
        // The command runs as the job user, who must read the (0600) file; the directory
        // stays root's, so nobody else can.
        std::os::unix::fs::fchown(file.as_file(), Some(user.uid), Some(user.gid)).map_err(|e| {
            CommandError::Unreachable(format!("cannot hand the job script to {}: {e}", user.name))
        })?;
    }
    let path = file.path().to_string_lossy().into_owned();
    run_local_with(bin_dir, run_as, inv, Some(&path)).await
}

async fn run_local_with(
    bin_dir: Option<&str>,
    run_as: Option<&JobUser>,
    inv: &Invocation<'_>,
    file_arg: Option<&str>,
) -> Result<CommandOutput, CommandError> {
    use std::process::Stdio;
    use tokio::io::AsyncWriteExt;
    let path = program_path(bin_dir, inv.program);
    let stdin = if file_arg.is_some() { None } else { inv.stdin };
    let mut cmd = tokio::process::Command::new(&path);
    cmd.args(inv.args)
        .args(file_arg)
        .envs(inv.env.iter().map(|(k, v)| (k, v)))
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(user) = run_as {
        // std drops root's supplementary groups when it sets the uid.
        cmd.uid(user.uid)
            .gid(user.gid)
            .env("USER", &user.name)
            .env("LOGNAME", &user.name)
            .env("HOME", &user.home)
            .current_dir("/");
    }
    let mut child = cmd.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            CommandError::NotFound(format!(
                "{path} not found on this machine{}",
                not_found_hint(bin_dir)
            ))
        } else {
            CommandError::Unreachable(format!("cannot run {path}: {e}"))
        }
    })?;
    if let (Some(data), Some(mut stdin)) = (stdin, child.stdin.take()) {
        // A command that exits without reading its stdin is not an error here.
        let _ = stdin.write_all(data).await;
    }
    let out = tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| timed_out(&path, "on this machine"))?
        .map_err(|e| CommandError::Unreachable(format!("cannot run {path}: {e}")))?;
    Ok(CommandOutput {
        status: out.status.code(),
        stdout: out.stdout,
        stderr: out.stderr,
    })
}

/// The command line for the login host's shell: `env NAME=value … PROGRAM 'arg' …`, every
/// word single-quoted. POSIX shells and csh both read single quotes literally (no newline
/// can occur: [`check_invocation`] refuses control characters).
pub fn remote_line(bin_dir: Option<&str>, inv: &Invocation<'_>) -> String {
    let mut words = Vec::new();
    if !inv.env.is_empty() {
        words.push("env".to_owned());
        words.extend(inv.env.iter().map(|(k, v)| sh_quote(&format!("{k}={v}"))));
    }
    words.push(sh_quote(&program_path(bin_dir, inv.program)));
    words.extend(inv.args.iter().map(|a| sh_quote(a)));
    if !inv.stdin_as_file {
        return words.join(" ");
    }
    // The file is private (mktemp: 0600) and removed whatever the command does; one line,
    // so csh-family login shells read it too.
    let body = format!(
        "f=$(mktemp) || exit 125; cat >\"$f\" || {{ rm -f \"$f\"; exit 125; }}; {} \"$f\"; r=$?; rm -f \"$f\"; exit $r",
        words.join(" ")
    );
    format!("sh -c {}", sh_quote(&body))
}

async fn run_remote(
    host: &str,
    pool: &crate::ssh::SshPool,
    slot: &tokio::sync::Mutex<Option<crate::ssh::Slot>>,
    line: &str,
    stdin: Option<&[u8]>,
) -> Result<CommandOutput, CommandError> {
    let unreachable = |e: anyhow::Error| {
        CommandError::Unreachable(format!("cannot reach login host {host}: {e:#}"))
    };
    let mut guard = slot.lock().await;
    if guard.is_none() {
        *guard = Some(pool.slot(host).await.map_err(unreachable)?);
    }
    let Some(held) = guard.as_mut() else {
        return Err(unreachable(anyhow::anyhow!("no SSH slot")));
    };
    // A master refusing the session (MaxSessions) moves this process to another one, once.
    let mut result = Err(anyhow::anyhow!("not run"));
    for _ in 0..2 {
        result = run_on(held, line, stdin).await;
        match &result {
            Err(e) if held.move_if_refused(e).await.unwrap_or(false) => continue,
            _ => break,
        }
    }
    let out = result.map_err(unreachable)?;
    // 127: the remote shell's "command not found".
    if out.status == Some(127) {
        return Err(CommandError::NotFound(format!(
            "{} on login host {host}: {}{}",
            line.split(' ')
                .find(|w| w != &"env" && !w.contains('='))
                .unwrap_or(line),
            out.stderr_line(),
            not_found_hint(None)
        )));
    }
    Ok(out)
}

async fn run_on(
    slot: &crate::ssh::Slot,
    line: &str,
    stdin: Option<&[u8]>,
) -> Result<CommandOutput> {
    use tokio::io::AsyncWriteExt;
    let session = session_with_retries(slot).await?;
    let mut cmd = session.raw_command(line);
    cmd.stdin(if stdin.is_some() {
        openssh::Stdio::piped()
    } else {
        openssh::Stdio::null()
    })
    .stdout(openssh::Stdio::piped())
    .stderr(openssh::Stdio::piped());
    let run = async {
        let mut child = cmd.spawn().await?;
        if let (Some(data), Some(mut w)) = (stdin, child.stdin().take()) {
            let _ = w.write_all(data).await;
            drop(w);
        }
        let out = child.wait_with_output().await?;
        Ok::<_, openssh::Error>(out)
    };
    let out = tokio::time::timeout(COMMAND_TIMEOUT, run)
        .await
        .context("no answer in time")?
        .context("the command could not be run over SSH")?;
    Ok(CommandOutput {
        status: out.status.code(),
        stdout: out.stdout,
        stderr: out.stderr,
    })
}

/// How often a connection to the login host is tried before a command counts as
/// unreachable: a master that is just being replaced (an idle one exiting, a killed hook's
/// master gone) should not fail a build.
const CONNECT_ATTEMPTS: u32 = 3;

/// The slot's session, retried [`CONNECT_ATTEMPTS`] times a second apart. Only connecting is
/// retried, never a command: a `qsub` that may have run is not sent twice.
async fn session_with_retries(slot: &crate::ssh::Slot) -> Result<openssh::Session> {
    let mut attempt = 1;
    loop {
        match slot.session().await {
            Ok(s) => return Ok(s),
            Err(e) if attempt >= CONNECT_ATTEMPTS => return Err(e),
            Err(e) => {
                tracing::debug!(attempt, "connecting to the login host: {e:#}");
                attempt += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

fn not_found_hint(bin_dir: Option<&str>) -> &'static str {
    if bin_dir.is_some() {
        " (check scheduler-bin-dir in nsh.conf)"
    } else {
        " (set scheduler-bin-dir in nsh.conf to the directory of the scheduler's commands, \
         or login-host to a host that has them)"
    }
}

fn timed_out(what: &str, place: &str) -> CommandError {
    CommandError::Unreachable(format!(
        "{} {place} did not finish within {} s",
        printable(what),
        COMMAND_TIMEOUT.as_secs()
    ))
}

pub fn printable(s: &str) -> String {
    let s = s.trim();
    let mut out: String = s
        .chars()
        .take(300)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if s.chars().count() > 300 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inv<'a>(args: &'a [String], env: &'a [(String, String)]) -> Invocation<'a> {
        Invocation {
            program: "qsub",
            args,
            env,
            stdin: None,
            stdin_as_file: false,
        }
    }

    #[test]
    fn remote_line_quotes_every_word() {
        let args = vec![
            "-l".to_owned(),
            "mem=1gb".to_owned(),
            "it's; rm -rf /".to_owned(),
        ];
        let env = vec![("PBS_SERVER".to_owned(), "pbs1".to_owned())];
        assert_eq!(
            remote_line(Some("/opt/pbs/bin/"), &inv(&args, &env)),
            "env 'PBS_SERVER=pbs1' '/opt/pbs/bin/qsub' '-l' 'mem=1gb' 'it'\\''s; rm -rf /'"
        );
        assert_eq!(remote_line(None, &inv(&[], &[])), "'qsub'");
        let mut file = inv(&args[..2], &[]);
        file.stdin_as_file = true;
        let line = remote_line(None, &file);
        assert!(line.starts_with("sh -c 'f=$(mktemp)"), "{line}");
        assert!(line.contains("'\\''qsub'\\'' '\\''-l'\\''"), "{line}");
    }

    #[tokio::test]
    async fn stdin_as_file_passes_a_path_and_removes_it() {
        let c = Commands::Local {
            bin_dir: None,
            run_as: None,
        };
        let args = vec![
            "-c".to_owned(),
            "cat \"$1\"; echo \"$1\" >&2".to_owned(),
            "sh".to_owned(),
        ];
        let out = c
            .run(Invocation {
                program: "sh",
                args: &args,
                env: &[],
                stdin: Some(b"#!/bin/sh\n"),
                stdin_as_file: true,
            })
            .await
            .unwrap();
        assert_eq!(out.stdout, b"#!/bin/sh\n");
        let path = out.stderr_line();
        assert!(path.contains("nsh-script-"), "{path}");
        assert!(!std::path::Path::new(&path).exists(), "{path} left behind");
    }

    #[test]
    fn control_characters_are_refused() {
        let args = vec!["a\nb".to_owned()];
        assert!(matches!(
            check_invocation(&inv(&args, &[])),
            Err(CommandError::BadArgument(_))
        ));
        let env = vec![("A B".to_owned(), "x".to_owned())];
        assert!(check_invocation(&inv(&[], &env)).is_err());
        let ok = vec!["-l".to_owned(), "ncpus=2".to_owned()];
        assert!(check_invocation(&inv(&ok, &[])).is_ok());
    }

    #[tokio::test]
    async fn local_commands_run_and_report() {
        let c = Commands::Local {
            bin_dir: None,
            run_as: None,
        };
        let args = vec!["-c".to_owned(), "cat; echo err >&2; exit 3".to_owned()];
        let out = c
            .run(Invocation {
                program: "sh",
                args: &args,
                env: &[],
                stdin: Some(b"in"),
                stdin_as_file: false,
            })
            .await
            .unwrap();
        assert_eq!(out.status, Some(3));
        assert_eq!(out.stdout, b"in");
        assert_eq!(out.stderr_line(), "err");
        let missing = Commands::Local {
            bin_dir: Some("/nonexistent".into()),
            run_as: None,
        };
        let err = missing.run(inv(&[], &[])).await.unwrap_err();
        assert!(matches!(err, CommandError::NotFound(_)), "{err}");
        assert!(err.to_string().contains("scheduler-bin-dir"), "{err}");
    }
}
