//! The batch script of a build job: wait (bounded) for the agent binary, then exec it.
//!
//! The script is the only thing the scheduler runs. It writes nothing but its own job
//! directory, so a job that never meets its hook leaves one small log behind and exits.

use crate::config::Config;

/// Per-job names on the cluster.
#[derive(Debug, Clone)]
pub struct JobFiles {
    /// `<state>/jobs/<key>`: 0700, holds the agent socket and the job's own log.
    pub dir: String,
    pub socket: String,
    pub log: String,
    /// `<state>/agents/nsh-remote-<id>`.
    pub agent: String,
    pub agents_dir: String,
    /// The state dir itself, without a trailing slash.
    pub state: String,
}

impl JobFiles {
    pub fn new(state_dir: &str, key: &str, agent_file: &str) -> JobFiles {
        let state = state_dir.trim_end_matches('/');
        let dir = format!("{state}/jobs/{key}");
        JobFiles {
            socket: format!("{dir}/agent.sock"),
            log: format!("{dir}/job.log"),
            dir,
            agent: format!("{state}/agents/{agent_file}"),
            agents_dir: format!("{state}/agents"),
            state: state.to_owned(),
        }
    }
}

/// A fresh job's files and token: every job of a build (the first and each resubmission)
/// gets its own directory and secret, so a late agent of a lost job serves nobody.
pub fn fresh_job(state_dir: &str, agent_file: &str) -> (JobFiles, String) {
    let key = hex::encode(rand::random::<[u8; 12]>());
    let token = hex::encode(rand::random::<[u8; 24]>());
    (JobFiles::new(state_dir, &key, agent_file), token)
}

/// POSIX sh, run by the hook (over SSH, before it uploads or uses an agent) and by the job
/// script (before it execs the agent): with `$s` the state dir and `$a` the agent, refuses
/// with exit 92 and a message on stderr unless `$s`, `$s/agents`, `$s/jobs` and (if it
/// exists) `$a` belong to the user running it and are not writable by group or others.
/// Anyone who can write there could swap the agent that runs with the job's rights.
/// `ls -ldnL` is POSIX: mode in field 1, numeric owner in field 3.
pub const STATE_DIR_CHECK_SH: &str = r#"nsh_unsafe() { echo "nsh: $1" >&2; exit 92; }
me=$(id -u)
for p in "$s" "$s/agents" "$s/jobs" "$a"; do
  [ -e "$p" ] || continue
  set -- $(ls -ldnL "$p")
  [ "$3" = "$me" ] || nsh_unsafe "$p belongs to uid $3, not to uid $me who runs the job: state-dir must be the job user's own (chown it, or choose another)"
  case $1 in ?????w*|????????w*) nsh_unsafe "$p is writable by group or others ($1): run 'chmod go-w $p' on the cluster";; esac
done
"#;

/// Exit status of [`STATE_DIR_CHECK_SH`] when it refuses.
pub const EXIT_UNSAFE_STATE_DIR: i32 = 92;

/// How long the job waits for nsh to upload the agent before giving up.
const AGENT_WAIT_TENTHS: u32 = 1200;

/// The script for `drv_path`'s job; `cpu_vars` is the backend's
/// [`crate::scheduler::Scheduler::cpu_count_vars`], passed to the agent.
pub fn render(
    config: &Config,
    files: &JobFiles,
    drv_path: &str,
    token: &str,
    cpu_vars: &str,
) -> String {
    let mut serve = format!(
        "exec \"$a\" serve --dir {} --lease-secs {}",
        sh_quote(&files.dir),
        nsh_wire::agent_protocol::LEASE.as_secs()
    );
    if let Some(store) = &config.remote_store {
        serve.push_str(&format!(" --store {}", sh_quote(store)));
    }
    if let Some(bin) = &config.remote_nix_bin_dir {
        serve.push_str(&format!(" --nix-bin-dir {}", sh_quote(bin)));
    }
    format!(
        "#!/bin/sh\n\
         # nsh build job for {drv}\n\
         umask 077\n\
         d={dir}\n\
         mkdir -p \"$d\" || exit 90\n\
         exec >>\"$d/job.log\" 2>&1\n\
         a={agent}\n\
         i=0\n\
         while [ ! -x \"$a\" ]; do\n\
         \x20 i=$((i+1))\n\
         \x20 if [ $i -gt {AGENT_WAIT_TENTHS} ]; then echo \"nsh: agent $a never arrived\"; rm -rf \"$d\"; exit 91; fi\n\
         \x20 sleep 0.1\n\
         done\n\
         s={state}\n\
         {check}\
         NSH_AGENT_TOKEN={token}\n\
         export NSH_AGENT_TOKEN\n\
         {cpus_env}={cpu_vars}\n\
         export {cpus_env}\n\
         {serve}\n",
        drv = drv_path.replace('\n', " "),
        dir = sh_quote(&files.dir),
        agent = sh_quote(&files.agent),
        token = sh_quote(token),
        state = sh_quote(&files.state),
        check = STATE_DIR_CHECK_SH,
        cpus_env = nsh_wire::agent_protocol::JOB_CPUS_VARS_ENV,
        cpu_vars = sh_quote(cpu_vars),
    )
}

/// Single-quotes `s` for POSIX sh.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), "'it'\\''s'");
    }

    /// Runs the check with the real /bin/sh against a directory of this test's.
    fn check_dir(setup: impl FnOnce(&std::path::Path)) -> (i32, String) {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir_all(state.join("agents")).unwrap();
        std::fs::create_dir_all(state.join("jobs")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        for p in [&state, &state.join("agents"), &state.join("jobs")] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        setup(&state);
        let script = format!(
            "s='{}'; a=\"$s/agents/nsh-remote-x\"\n{STATE_DIR_CHECK_SH}echo fine\n",
            state.display()
        );
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(script)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.code().unwrap_or(-1), text)
    }

    #[test]
    fn state_dir_check() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path, m| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
        };
        assert_eq!(check_dir(|_| {}), (0, "fine\n".into()));
        let (code, text) = check_dir(|s| mode(s, 0o770));
        assert_eq!(code, EXIT_UNSAFE_STATE_DIR, "{text}");
        assert!(
            text.contains("is writable by group or others (drwxrwx---)"),
            "{text}"
        );
        assert!(text.contains("chmod go-w"), "{text}");
        let (code, text) = check_dir(|s| mode(&s.join("jobs"), 0o703));
        assert_eq!(code, EXIT_UNSAFE_STATE_DIR, "{text}");
        assert!(text.contains("/jobs is writable"), "{text}");
        let (code, text) = check_dir(|s| {
            let agent = s.join("agents/nsh-remote-x");
            std::fs::write(&agent, b"x").unwrap();
            mode(&agent, 0o722);
        });
        assert_eq!(code, EXIT_UNSAFE_STATE_DIR, "{text}");
        assert!(text.contains("nsh-remote-x is writable"), "{text}");
    }

    #[test]
    fn script_names_the_cpu_variables() {
        let f = JobFiles::new("/s", "k1", "nsh-remote-abc");
        let render_with = |vars| render(&Config::default(), &f, "/nix/store/x.drv", "tok", vars);
        let script = render_with("NCPUS PBS_NUM_PPN");
        assert!(
            script.contains("\nNSH_JOB_CPUS_VARS='NCPUS PBS_NUM_PPN'\nexport NSH_JOB_CPUS_VARS\n"),
            "{script}"
        );
        let hostile = render_with("A'; id; '");
        assert!(
            hostile.contains(r"NSH_JOB_CPUS_VARS='A'\''; id; '\'''"),
            "{hostile}"
        );
    }

    #[test]
    fn files_layout() {
        let f = JobFiles::new("/home/u/.nsh/", "k1", "nsh-remote-abc");
        assert_eq!(f.socket, "/home/u/.nsh/jobs/k1/agent.sock");
        assert_eq!(f.agent, "/home/u/.nsh/agents/nsh-remote-abc");
    }
}
