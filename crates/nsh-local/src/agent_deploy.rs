//! Putting the agent binary on the cluster: once per state dir, named by its content.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use openssh::{Session, Stdio};
use tokio::io::AsyncWriteExt;

use crate::job_script::{self, JobFiles};

/// The agent binary nsh uploads, with its content id.
#[derive(Clone)]
pub struct AgentBinary {
    pub path: PathBuf,
    pub file_name: String,
}

impl AgentBinary {
    /// `$NSH_REMOTE_BINARY`, else `nsh-remote` next to this executable.
    pub fn locate() -> Result<AgentBinary> {
        let path = match std::env::var_os("NSH_REMOTE_BINARY") {
            Some(p) => PathBuf::from(p),
            None => {
                let exe = std::env::current_exe().context("cannot find nsh's own executable")?;
                exe.parent()
                    .map(|d| d.join("nsh-remote"))
                    .context("nsh's executable has no directory")?
            }
        };
        let bytes = std::fs::read(&path).with_context(|| {
            format!(
                "cannot read the agent binary {} (install nsh-remote next to nsh, or set \
                 NSH_REMOTE_BINARY)",
                path.display()
            )
        })?;
        let id = nsh_wire::ids::content_id(&bytes);
        Ok(AgentBinary {
            path,
            file_name: nsh_wire::ids::agent_file_name(&id),
        })
    }
}

/// The shell text, run with the state dir as `$1` and the agent's file name as `$2`, that
/// creates the state dir if missing and checks it ([`job_script::STATE_DIR_CHECK_SH`],
/// which reuses the positional parameters: `vars` saves what `then` needs), then tests
/// that the agent is there (exit [`EXIT_AGENT_MISSING`] if not) and runs `then`.
fn probe_script(vars: &str, then: &str) -> String {
    format!(
        "umask 077; s=$1; a=$1/agents/$2{vars}\n\
         mkdir -p \"$s/agents\" \"$s/jobs\" || exit 93\n\
         {}test -x \"$a\" || exit {EXIT_AGENT_MISSING}\n{then}",
        job_script::STATE_DIR_CHECK_SH
    )
}

/// [`probe_script`], then (agent there and the dir safe) `exec`s the agent's `connect`
/// to the socket `$3`, waiting up to `$4` seconds for it: one SSH command instead of a
/// probe and then the channel, a round trip less on every build's path.
pub fn connect_script() -> String {
    probe_script(
        "; k=$3; w=$4",
        "exec \"$a\" connect \"$k\" --wait-secs \"$w\"\n",
    )
}

/// The probe's exit status when the agent is not in the state dir (the agent's own
/// `connect` exits with 0 to 2).
pub const EXIT_AGENT_MISSING: i32 = 94;

/// What the probe's exit status (and stderr) says: `Ok(true)` the agent is there,
/// `Ok(false)` it is missing (upload it), `Err` the state dir is not usable.
pub fn probe_verdict(
    code: Option<i32>,
    stderr: &[u8],
    host: &str,
    files: &JobFiles,
) -> Result<bool> {
    let said = || {
        let text = String::from_utf8_lossy(stderr);
        text.trim().trim_start_matches("nsh: ").to_owned()
    };
    match code {
        Some(0) => Ok(true),
        Some(EXIT_AGENT_MISSING) => Ok(false),
        Some(job_script::EXIT_UNSAFE_STATE_DIR) => bail!(
            "the state dir on {host} is not safe to run an agent from: {}; nothing was \
             uploaded",
            said()
        ),
        Some(93) => bail!(
            "cannot create state-dir {} on {host}: {} — check that its parent exists \
             and is writable by you on the cluster",
            files.state,
            said()
        ),
        _ => bail!(
            "checking state-dir {} on {host} failed ({}): {}",
            files.state,
            code.map_or("killed by a signal".to_string(), |c| format!(
                "exit status {c}"
            )),
            said()
        ),
    }
}

/// Makes sure `<agents_dir>/<file_name>` exists on the cluster; uploads it if not. First,
/// in the same SSH command, the state dir is created if missing and checked
/// ([`probe_script`]): if others could write there, nothing is uploaded.
/// Returns the number of bytes uploaded (0 if it was there).
pub async fn ensure_agent(
    session: &Session,
    host: &str,
    files: &JobFiles,
    agent: &AgentBinary,
) -> Result<u64> {
    let out = session
        .command("sh")
        .arg("-c")
        .arg(probe_script("", ""))
        .arg("nsh-state")
        .arg(&files.state)
        .arg(&agent.file_name)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .await
        .with_context(|| format!("cannot run a command on {host} over SSH"))?;
    if probe_verdict(out.status.code(), &out.stderr, host, files)? {
        return Ok(0);
    }
    upload(session, host, files, agent).await
}

/// Uploads the agent (temp file + rename, so concurrent hooks and a waiting job never see
/// half a binary); the number of bytes sent. The caller checked the state dir.
pub async fn upload(
    session: &Session,
    host: &str,
    files: &JobFiles,
    agent: &AgentBinary,
) -> Result<u64> {
    let agents_dir = &files.agents_dir;
    let target = format!("{agents_dir}/{}", agent.file_name);
    let bytes = tokio::fs::read(&agent.path)
        .await
        .with_context(|| format!("cannot read {}", agent.path.display()))?;
    // Other hooks trust the name to say what the file holds: never upload other bytes
    // under it (nsh-remote replaced by an upgrade while this hook ran).
    if nsh_wire::ids::agent_file_name(&nsh_wire::ids::content_id(&bytes)) != agent.file_name {
        bail!(
            "{} changed while nsh was running (an upgrade?); not uploading it as {}: \
             retry the build",
            agent.path.display(),
            agent.file_name
        );
    }
    let script = "set -e; umask 077; mkdir -p \"$1\"; t=$(mktemp \"$1/.upload.XXXXXX\"); \
                  cat > \"$t\"; chmod 0700 \"$t\"; mv -f \"$t\" \"$1/$2\"";
    let mut child = session
        .command("sh")
        .arg("-c")
        .arg(script)
        .arg("nsh-upload")
        .arg(agents_dir)
        .arg(&agent.file_name)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .await
        .with_context(|| format!("cannot start the agent upload to {host}"))?;
    let mut stdin = child.stdin().take().context("no stdin for the upload")?;
    stdin
        .write_all(&bytes)
        .await
        .with_context(|| format!("uploading the agent to {host}:{target} failed"))?;
    stdin.shutdown().await.ok();
    drop(stdin);
    let out = child.wait_with_output().await?;
    if !out.status.success() {
        bail!(
            "uploading the agent to {host}:{target} failed: {} — check that state-dir \
             ({agents_dir}/..) is writable by you on the cluster",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(bytes.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// Runs [`connect_script`] with the real /bin/sh on a state dir of this test's, with a
    /// stand-in agent that prints its arguments.
    fn run_connect(setup: impl FnOnce(&std::path::Path)) -> (Option<i32>, String) {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir(&state).unwrap();
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
        setup(&state);
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(connect_script())
            .args(["nsh-connect", state.to_str().unwrap(), "nsh-remote-x"])
            .args(["/s/jobs/k/agent.sock", "60"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.code(), text)
    }

    fn agent(state: &std::path::Path, mode: u32) {
        let a = state.join("agents/nsh-remote-x");
        std::fs::write(&a, "#!/bin/sh\necho \"agent: $*\"\n").unwrap();
        std::fs::set_permissions(&a, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn connect_script_checks_then_runs_the_agent() {
        // A fresh state dir: created, no agent yet.
        let (code, text) = run_connect(|_| {});
        assert_eq!(code, Some(EXIT_AGENT_MISSING), "{text}");
        // The agent in place: its connect runs, with the socket and the wait the check's
        // `set --` would otherwise have overwritten.
        let (code, text) = run_connect(|s| {
            std::fs::create_dir_all(s.join("agents")).unwrap();
            agent(s, 0o700);
        });
        assert_eq!(code, Some(0), "{text}");
        assert_eq!(text, "agent: connect /s/jobs/k/agent.sock --wait-secs 60\n");
        // Others may write the agent: refused before it runs.
        let (code, text) = run_connect(|s| {
            std::fs::create_dir_all(s.join("agents")).unwrap();
            agent(s, 0o722);
        });
        assert_eq!(code, Some(job_script::EXIT_UNSAFE_STATE_DIR), "{text}");
        assert!(!text.contains("agent:"), "{text}");
        let files = JobFiles::new("/s", "k", "nsh-remote-x");
        let err = probe_verdict(code, text.as_bytes(), "node1", &files).unwrap_err();
        assert!(
            format!("{err}").contains("not safe to run an agent from"),
            "{err}"
        );
        assert!(!probe_verdict(Some(EXIT_AGENT_MISSING), b"", "node1", &files).unwrap());
    }
}
