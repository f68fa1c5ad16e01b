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
        }
    }
}

/// How long the job waits for nsh to upload the agent before giving up.
const AGENT_WAIT_TENTHS: u32 = 1200;

/// Lease of the agent: with no hook talking to it for this long, it ends the build.
pub const LEASE_SECS: u64 = 60;

pub fn render(config: &Config, files: &JobFiles, drv_path: &str, token: &str) -> String {
    let mut serve = format!(
        "exec \"$a\" serve --dir {} --lease-secs {LEASE_SECS}",
        sh_quote(&files.dir)
    );
    if config.remote_store != "auto" {
        serve.push_str(&format!(" --store {}", sh_quote(&config.remote_store)));
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
         NSH_AGENT_TOKEN={token}\n\
         export NSH_AGENT_TOKEN\n\
         {serve}\n",
        drv = drv_path.replace('\n', " "),
        dir = sh_quote(&files.dir),
        agent = sh_quote(&files.agent),
        token = sh_quote(token),
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

    #[test]
    fn files_layout() {
        let f = JobFiles::new("/home/u/.nsh/", "k1", "nsh-remote-abc");
        assert_eq!(f.socket, "/home/u/.nsh/jobs/k1/agent.sock");
        assert_eq!(f.agent, "/home/u/.nsh/agents/nsh-remote-abc");
    }
}
