//! The build-hook protocol loop: settings, offers, replies, and after an accept
//! the build itself. Nix reads our replies with a blocking read on its only worker thread,
//! so every reply is sent as soon as it is known: for a cluster build, right after the
//! scheduler accepted the job — never after waiting for the queue.

use std::collections::BTreeMap;
use std::io::{BufReader, Read};

use anyhow::{Context, Result};
use nsh_wire::compression;
use nsh_wire::derivation::Derivation;
use nsh_wire::hook::{self, HookRequest, Offer, Reply};

use crate::agent_deploy::AgentBinary;
use crate::build::Build;
use crate::config::Config;
use crate::fallback::Fallback;
use crate::job_script;
use crate::local_store::LocalStore;
use crate::nix_log::{self, Ui};
use crate::queue_slots::{self, Claim, Slot};
use crate::routing::{Route, route};
use crate::scheduler::{Backend, ErrorKind, JobId, JobParams, JobSpec, Scheduler};

/// Records the bytes a parser consumed, so they can be replayed to Nix's own hook.
struct RecordingReader<R> {
    inner: R,
    recorded: Vec<u8>,
}

impl<R: Read> Read for RecordingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.recorded.extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

impl<R> RecordingReader<R> {
    fn take_recorded(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.recorded)
    }
}

fn reply(r: &Reply) {
    nix_log::emit(&r.to_line());
}

/// `# accept` and accept mode together: from here Nix shows only `@nix` messages, so a
/// message printed after an accept without the mode would be dropped.
fn accept(ui: &Ui, machine: String) {
    reply(&Reply::Accept { machine });
    ui.set_accepted();
}

/// Runs the hook; returns the process exit status.
pub fn run(verbosity: &str) -> i32 {
    let ui = Ui::from_hook_fds();
    let mut input = RecordingReader {
        inner: BufReader::new(std::io::stdin()),
        recorded: Vec::new(),
    };
    let settings = match hook::read_settings(&mut input) {
        Ok(s) => s,
        Err(e) => {
            ui.error(&format!("nsh: cannot read the settings Nix sent: {e}"));
            return 1;
        }
    };
    let raw_settings = input.take_recorded();
    let nix_settings: BTreeMap<String, String> = settings.into_iter().collect();
    let config = crate::config::load();
    if let Ok(c) = &config {
        for w in &c.warnings {
            ui.warn(&format!("nsh: {w}"));
        }
    }
    let mut elsewhere = Elsewhere {
        verbosity,
        raw_settings: &raw_settings,
        fallback: FallbackState::NotStarted,
    };

    loop {
        let request = match hook::read_request(&mut input) {
            Ok(r) => r,
            Err(e) => {
                ui.error(&format!("nsh: cannot read Nix's request: {e}"));
                return 1;
            }
        };
        let raw_offer = input.take_recorded();
        let offer = match request {
            HookRequest::Eof => {
                elsewhere.close();
                return 0;
            }
            HookRequest::Try(o) => o,
        };
        let config = match &config {
            Ok(c) => c,
            Err(e) => {
                ui.error(&format!("nsh: {e:#}"));
                ui.error("nsh: not building on the cluster until nsh.conf is fixed");
                reply(&Reply::DeclinePermanently);
                continue;
            }
        };
        match route(config, &offer.system, &offer.required_features) {
            Route::Elsewhere(why) => {
                tracing::debug!(drv = offer.drv_path, why, "not for the cluster");
                if let Some(code) = elsewhere.offer(&ui, &raw_offer, &mut input) {
                    return code;
                }
            }
            Route::Cluster => {
                if let Some(code) =
                    accept_for_cluster(&ui, config, &nix_settings, &offer, &mut input)
                {
                    return code;
                }
            }
        }
    }
}

/// Nix's own build hook, for what is not the cluster's: started at the first such offer,
/// and not again once it failed.
struct Elsewhere<'a> {
    verbosity: &'a str,
    /// The settings block as Nix sent it, replayed to the fallback when it starts.
    raw_settings: &'a [u8],
    fallback: FallbackState,
}

enum FallbackState {
    NotStarted,
    Running(Fallback),
    Failed,
}

impl Elsewhere<'_> {
    /// Passes the offer to the fallback (started if need be) and relays its answer, or
    /// declines when there is none. `Some(exit code)` when it accepted: it then builds,
    /// and this hook ends with it.
    fn offer<R: Read>(
        &mut self,
        ui: &Ui,
        raw_offer: &[u8],
        input: &mut RecordingReader<R>,
    ) -> Option<i32> {
        if let FallbackState::NotStarted = self.fallback {
            self.fallback = match Fallback::start(self.verbosity, self.raw_settings) {
                Ok(f) => FallbackState::Running(f),
                Err(e) => {
                    tracing::debug!("no fallback hook: {e:#}");
                    FallbackState::Failed
                }
            };
        }
        let FallbackState::Running(f) = &mut self.fallback else {
            reply(&Reply::Decline);
            return None;
        };
        match f.offer(raw_offer) {
            Ok(line) if line == "# accept" => {
                accept(ui, f.machine_line().unwrap_or_default());
                let rest = read_rest(input);
                let FallbackState::Running(f) =
                    std::mem::replace(&mut self.fallback, FallbackState::Failed)
                else {
                    return Some(1);
                };
                Some(f.finish(&rest).unwrap_or_else(|e| {
                    ui.error(&format!("nsh: Nix's own build hook failed: {e:#}"));
                    1
                }))
            }
            Ok(line) => {
                nix_log::emit(&format!("{line}\n"));
                None
            }
            Err(e) => {
                tracing::debug!("fallback hook failed: {e:#}");
                self.fallback = FallbackState::Failed;
                reply(&Reply::Decline);
                None
            }
        }
    }

    fn close(self) {
        if let FallbackState::Running(f) = self.fallback {
            f.close();
        }
    }
}

fn read_rest<R: Read>(input: &mut RecordingReader<R>) -> Vec<u8> {
    let mut rest = Vec::new();
    let _ = input.inner.read_to_end(&mut rest);
    rest
}

/// Everything about the derivation that must hold before a job is submitted.
struct Prepared {
    store: LocalStore,
    drv: Derivation,
    params: JobParams,
}

fn prepare(
    config: &Config,
    nix_settings: &BTreeMap<String, String>,
    drv_path: &str,
) -> Result<Prepared> {
    let store = LocalStore::from_setting(nix_settings.get("store").map_or("auto", |s| s))?;
    // Store paths name their store directory, so a cluster whose Nix uses another one
    // cannot build our derivations (Nix's own remote building has the same rule).
    if config.store_dir != store.store_dir {
        anyhow::bail!(
            "store-dir = {} in nsh.conf, but the local store is {}: both must be the same",
            config.store_dir,
            store.store_dir
        );
    }
    let real = store.real_path(drv_path)?;
    let text = std::fs::read(&real).with_context(|| format!("cannot read {}", real.display()))?;
    let drv = Derivation::parse(&text).with_context(|| format!("cannot parse {drv_path}"))?;
    let params =
        crate::scheduler::derivation_params(config, &drv).with_context(|| drv_path.to_string())?;
    Ok(Prepared { store, drv, params })
}

/// Why nsh cannot build `drv` at all, if it cannot.
fn not_for_nsh(drv: &Derivation) -> Option<String> {
    // Outputs known only after the build (they need realisations).
    if drv.is_floating_ca() {
        return Some(
            "it is a floating content-addressed derivation, which nsh does not build yet".into(),
        );
    }
    // Fixed outputs nsh cannot check (text or git hashing, both experimental in Nix).
    drv.outputs.keys().find_map(|name| {
        drv.fixed_output(name)
            .err()
            .map(|e| format!("its fixed output '{name}' cannot be checked by nsh: {e}"))
    })
}

fn accept_for_cluster<R: Read>(
    ui: &Ui,
    config: &Config,
    nix_settings: &BTreeMap<String, String>,
    offer: &Offer,
    input: &mut RecordingReader<R>,
) -> Option<i32> {
    let prepared = prepare(config, nix_settings, &offer.drv_path);
    // Declined, not failed: Nix may still build these itself.
    if let Some(why) = prepared.as_ref().ok().and_then(|p| not_for_nsh(&p.drv)) {
        ui.warn(&format!(
            "nsh: not sending {} to the cluster: {why}",
            offer.drv_path
        ));
        reply(&Reply::Decline);
        return None;
    }
    let slot = match prepared.as_ref().map(|_| queue_slot(config)) {
        Ok(Ok(Claim::Full { cap })) => {
            tracing::debug!(drv = offer.drv_path, cap, "max-queued-jobs reached");
            reply(&Reply::Postpone);
            return None;
        }
        Ok(Err(e)) => {
            ui.error(&format!("nsh: max-queued-jobs: {e:#}"));
            reply(&Reply::DeclinePermanently);
            return None;
        }
        Ok(Ok(Claim::Taken(slot))) => Some(slot),
        Ok(Ok(Claim::Uncapped)) | Err(_) => None,
    };
    accept_and_build(ui, config, nix_settings, offer, input, prepared, slot)
}

/// A place in this host's `max-queued-jobs`, taken before anything is submitted.
fn queue_slot(config: &Config) -> Result<Claim> {
    if config.max_queued_jobs == 0 {
        return Ok(Claim::Uncapped);
    }
    queue_slots::claim(&crate::runtime_dir::runtime_dir()?, config.max_queued_jobs)
}

fn accept_and_build<R: Read>(
    ui: &Ui,
    config: &Config,
    nix_settings: &BTreeMap<String, String>,
    offer: &Offer,
    input: &mut RecordingReader<R>,
    prepared: Result<Prepared>,
    slot: Option<Slot>,
) -> Option<i32> {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            ui.error(&format!("nsh: cannot start its runtime: {e}"));
            reply(&Reply::Decline);
            return None;
        }
    };
    // Problems with the derivation itself: accept, then fail the build with the reason, so
    // the error belongs to this derivation and nothing is submitted.
    let prepared = match prepared {
        Ok(p) => p,
        Err(e) => {
            accept(ui, "nsh (not submitted)".into());
            let _ = hook::read_inputs_and_outputs(input);
            ui.error(&format!("nsh: {e:#}"));
            return Some(100);
        }
    };
    let sched = match rt.block_on(Backend::from_config(config)) {
        Ok(s) => s,
        Err(e) => {
            ui.error(&format!("nsh: {e:#}"));
            reply(&Reply::DeclinePermanently);
            return Some(0);
        }
    };
    let to_submit = ToSubmit {
        prepared,
        slot,
        sched: &sched,
    };
    rt.block_on(submit_and_build(
        ui,
        config,
        nix_settings,
        offer,
        input,
        to_submit,
    ))
}

/// What the submit needs besides the offer: the checked derivation, the queue slot it
/// holds (`max-queued-jobs`) and the scheduler.
struct ToSubmit<'a, S> {
    prepared: Prepared,
    slot: Option<Slot>,
    sched: &'a S,
}

/// Submits the job, answers Nix and runs the build: `None` when the offer was postponed
/// (the hook then reads Nix's next offer), else the hook's exit status.
async fn submit_and_build<R: Read, S: Scheduler>(
    ui: &Ui,
    config: &Config,
    nix_settings: &BTreeMap<String, String>,
    offer: &Offer,
    input: &mut RecordingReader<R>,
    to_submit: ToSubmit<'_, S>,
) -> Option<i32> {
    let ToSubmit {
        prepared,
        slot,
        sched,
    } = to_submit;
    let Some((agent, state_dir)) = agent_and_state_dir(ui, config) else {
        reply(&Reply::DeclinePermanently);
        return Some(0);
    };
    let (files, token) = job_script::fresh_job(&state_dir, &agent.file_name);
    let spec = JobSpec {
        name: format!("nsh-{}", drv_name(&offer.drv_path)),
        script: job_script::render(
            config,
            &files,
            &offer.drv_path,
            &token,
            sched.cpu_count_vars(),
        ),
        environment: job_environment(),
        working_dir: "/".into(),
        params: prepared.params.clone(),
        exclude_hosts: Vec::new(),
    };
    let phases = crate::phases::Phases::new();
    let job = match submit_job(ui, sched, &spec, &offer.drv_path).await {
        Ok(j) => j,
        Err(exit) => return exit,
    };
    phases.mark("submit");
    // Started before the reply: from here on, however the hook ends, the job ends too.
    // The reaper keeps the queue slot until the job has left the queue.
    let reaper = crate::reaper::spawn_or_warn(ui, &job, slot.as_ref());
    accept(ui, format!("{} job {job}", sched.name()));
    ui.info(&format!(
        "nsh: submitted {} as job {job} to {}",
        offer.drv_path,
        sched.describe()
    ));
    let (inputs, wanted_outputs) = match hook::read_inputs_and_outputs(input) {
        Ok(x) => x,
        Err(e) => {
            ui.error(&format!("nsh: cannot read the inputs Nix sent: {e}"));
            let _ = sched.cancel(&job).await;
            if let Some(r) = reaper {
                r.release();
            }
            return Some(1);
        }
    };
    let build = Build {
        ui,
        config,
        store: prepared.store,
        nix_settings,
        drv_path: offer.drv_path.clone(),
        drv: prepared.drv,
        inputs,
        wanted_outputs,
        job: job.clone(),
        files,
        token,
        agent,
        attempt: 0,
        registered: Default::default(),
        phases,
    };
    // The queue slot stays with this hook (and each job's reaper) across resubmissions.
    Some(crate::resubmit::run(build, sched, spec, reaper, slot.as_ref()).await)
}

/// The agent binary to deploy and the state dir its jobs use, or `None` after saying why.
fn agent_and_state_dir(ui: &Ui, config: &Config) -> Option<(AgentBinary, String)> {
    let agent = AgentBinary::locate()
        .map_err(|e| ui.error(&format!("nsh: {e:#}")))
        .ok()?;
    let Some(state_dir) = config.state_dir.clone() else {
        ui.error(&format!(
            "nsh: 'state-dir' is required when job-scheduler = {}",
            config.job_scheduler
        ));
        return None;
    };
    Some((agent, state_dir))
}

/// Submits the job. A refusal for a limit postpones the build (Nix offers it again after
/// build-poll-interval seconds: by then jobs may have ended) and gives `Err(None)`; any
/// other failure declines it for good and gives `Err(Some(0))`.
async fn submit_job<S: Scheduler>(
    ui: &Ui,
    sched: &S,
    spec: &JobSpec,
    drv_path: &str,
) -> Result<JobId, Option<i32>> {
    match sched.submit(spec).await {
        Ok(j) => Ok(j),
        Err(e) if sched.error_kind(&e) == ErrorKind::Refused => {
            tracing::debug!(drv = drv_path, "submission refused for a limit: {e:#}");
            reply(&Reply::Postpone);
            Err(None)
        }
        Err(e) => {
            ui.error(&format!(
                "nsh: cannot submit the job for {drv_path} to {}: {e:#}",
                sched.describe()
            ));
            reply(&Reply::DeclinePermanently);
            Err(Some(0))
        }
    }
}

/// The job's environment: a PATH that finds Nix where clusters install it, and the
/// compression level if the user set one for this nsh (the agent compresses outputs).
fn job_environment() -> Vec<(String, String)> {
    let mut env = vec![(
        "PATH".to_string(),
        "/usr/local/bin:/usr/bin:/bin:/nix/var/nix/profiles/default/bin".to_string(),
    )];
    // The level the hook compresses at, checked, so the agent answers in kind.
    if let Ok(asked) = std::env::var(compression::LEVEL_ENV) {
        let level = compression::level_from(Some(&asked));
        env.push((compression::LEVEL_ENV.into(), level.to_string()));
    }
    env
}

/// `/nix/store/<hash>-hello-2.12.drv` → `hello-2.12`.
fn drv_name(drv_path: &str) -> String {
    let base = drv_path.rsplit('/').next().unwrap_or(drv_path);
    let name = base.split_once('-').map_or(base, |(_, n)| n);
    name.trim_end_matches(".drv").chars().take(40).collect()
}
