//! `nsh check`: walks a user through their setup the way a build would, one step at a
//! time, and says what to fix at the first step that fails: configuration, scheduler API
//! and token, a tiny job, SSH to its host, the agent upload, and the agent's own
//! `self-check` of that node (Nix binaries, store location, state dir).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::agent_deploy::{self, AgentBinary};
use crate::config;
use crate::job_script::{self, JobFiles};
use crate::scheduler::backend::print_line;
use crate::scheduler::{Backend, JobSpec, JobState, Scheduler};
use crate::ssh::SshPool;

fn ok(what: &str) {
    println!("ok    {what}");
}

pub fn run() -> Result<()> {
    let config = config::load()?;
    ok(&format!(
        "configuration ({})",
        if config.files_read.is_empty() {
            "defaults and NSH_CONFIG".to_string()
        } else {
            config.files_read.join(", ")
        }
    ));
    for w in &config.warnings {
        println!("warn  {w}");
    }
    let agent = AgentBinary::locate()?;
    ok(&format!("agent binary {}", agent.path.display()));
    if let Some((attr, default)) = crate::scheduler::backend::derivation_attribute(&config) {
        params_line(&config, attr, default);
    }
    // Held while the test job runs: it counts against the cap like any build.
    let _slot = check_queue_cap(&config)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let (sched, lines) = Backend::for_check(&config).await?;
        for line in &lines {
            print_line(line);
        }
        check_job(&config, &sched, &agent).await
    })
}

/// Which job parameters a derivation may ask for, and whether the admin changed the set.
fn params_line(config: &config::Config, attr: &str, default: &[&str]) {
    let allowed = crate::scheduler::job_params::allowed_set(config, default);
    ok(&format!(
        "derivations may ask for {} job parameters in {attr} ({}; allowed-job-params {})",
        allowed.len(),
        allowed
            .iter()
            .take(4)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
            + ", …",
        if config.allowed_job_params.is_some() || !config.extra_allowed_job_params.is_empty() {
            "set in nsh.conf"
        } else {
            "at its default"
        }
    ));
}

/// `max-queued-jobs`: the slot files work, and how full the cap is now.
fn check_queue_cap(config: &config::Config) -> Result<Option<crate::queue_slots::Slot>> {
    use crate::queue_slots::{Claim, claim};
    let cap = config.max_queued_jobs;
    let dir = crate::runtime_dir::runtime_dir()?;
    Ok(match claim(&dir, cap).context("max-queued-jobs")? {
        Claim::Uncapped => {
            ok("max-queued-jobs = 0: no cap on this host's queued jobs");
            None
        }
        Claim::Taken(slot) => {
            ok(&format!(
                "max-queued-jobs = {cap}: queue slots in {} usable",
                dir.join("queue-slots").display()
            ));
            Some(slot)
        }
        Claim::Full { cap } => {
            println!(
                "warn  max-queued-jobs = {cap}: all slots are held by builds of this host now; \
                 the test job is submitted anyway"
            );
            None
        }
    })
}

async fn check_job<S: Scheduler>(
    config: &config::Config,
    sched: &S,
    agent: &AgentBinary,
) -> Result<()> {
    let state_dir = config
        .state_dir
        .clone()
        .context("'state-dir' is required")?;
    let key = format!("check-{}", hex::encode(rand::random::<[u8; 6]>()));
    let files = JobFiles::new(&state_dir, &key, &agent.file_name);
    let mut self_check = format!(
        "\"$a\" self-check --state-dir {}",
        job_script::sh_quote(&state_dir)
    );
    if let Some(store) = &config.remote_store {
        self_check.push_str(&format!(" --store {}", job_script::sh_quote(store)));
    }
    if let Some(bin) = &config.remote_nix_bin_dir {
        self_check.push_str(&format!(" --nix-bin-dir {}", job_script::sh_quote(bin)));
    }
    let script = format!(
        "#!/bin/sh\numask 077\nd={dir}\nmkdir -p \"$d\" || exit 90\na={agent}\ni=0\n\
         while [ ! -x \"$a\" ]; do i=$((i+1)); [ $i -gt 600 ] && exit 91; sleep 0.1; done\n\
         {self_check} >\"$d/check.out\" 2>&1\necho $? >\"$d/check.status\"\n",
        dir = job_script::sh_quote(&files.dir),
        agent = job_script::sh_quote(&files.agent),
    );
    let job = sched
        .submit(&JobSpec {
            name: "nsh-check".into(),
            script,
            environment: vec![(
                "PATH".into(),
                "/usr/local/bin:/usr/bin:/bin:/nix/var/nix/profiles/default/bin".into(),
            )],
            working_dir: "/".into(),
            params: Backend::admin_params(config)?,
            exclude_hosts: Vec::new(),
        })
        .await
        .context("cannot submit a test job")?;
    ok(&format!("submitted test job {job}"));
    let result = follow_job(sched, agent, &files, &job).await;
    if result.is_err() {
        let _ = sched.cancel(&job).await;
    }
    result
}

async fn follow_job<S: Scheduler>(
    sched: &S,
    agent: &AgentBinary,
    files: &JobFiles,
    job: &crate::scheduler::JobId,
) -> Result<()> {
    let start = Instant::now();
    let host = loop {
        let st = sched.status(job).await?;
        match st.state {
            // A finished job is fine if it ran: the agent was there already.
            JobState::Running | JobState::Finished => {
                if let Some(h) = st.host.filter(|h| !h.is_empty()) {
                    crate::scheduler::check_host_name(&h)
                        .map_err(|why| anyhow::anyhow!("test job {job} names its host {why}"))?;
                    break h;
                }
            }
            JobState::Pending => {}
            _ => bail!("test job {job} ended before it ran ({})", st.raw_state),
        }
        if start.elapsed() > Duration::from_secs(120) {
            bail!(
                "test job {job} did not start within 2 minutes (state {}, reason {}); is the \
                 partition busy or down?",
                st.raw_state,
                st.reason.unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    ok(&format!(
        "test job {job} started on {host} after {:.1}s",
        start.elapsed().as_secs_f64()
    ));
    let pool = SshPool::new(&crate::runtime_dir::runtime_dir()?)?;
    let slot = pool.slot(&host).await?;
    let session = Arc::new(slot.session().await?);
    ok(&format!("ssh {host}"));
    let sent = agent_deploy::ensure_agent(&session, &host, files, agent).await?;
    ok(&format!(
        "agent {} ({})",
        files.agent,
        if sent > 0 {
            format!("uploaded {sent} bytes")
        } else {
            "already there".into()
        }
    ));
    let status_file = format!("{}/check.status", files.dir);
    for _ in 0..300 {
        let st = session.command("cat").arg(&status_file).output().await?;
        if st.status.success() {
            let out = session
                .command("cat")
                .arg(format!("{}/check.out", files.dir))
                .output()
                .await?;
            let _ = session
                .command("rm")
                .arg("-rf")
                .arg(&files.dir)
                .status()
                .await;
            print!("{}", String::from_utf8_lossy(&out.stdout));
            if String::from_utf8_lossy(&st.stdout).trim() != "0" {
                bail!("the agent's self-check on {host} failed (see above)");
            }
            ok(&format!("self-check on {host}"));
            println!("nsh check: all good");
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("the test job on {host} did not finish its self-check within a minute")
}
