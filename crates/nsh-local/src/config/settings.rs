//! The definition list: every setting of `nsh.conf`, once.
//!
//! Each [`Setting`] names the setting (and its aliases), says whether it is a list (only
//! lists take `extra-`) or a secret (never quoted, its file checked for permissions), gives
//! the README's default and doc, and parses a value into [`Config`]. The loader, the
//! unknown-key error and its suggestion, and the README's settings table (a unit test in
//! `tests/readme.rs` renders the table from this list and compares) all use it, so adding a
//! setting here is the whole job, apart from its `Config` field and any cross-setting rule
//! in `validate.rs`. The order is the README's.

use std::path::PathBuf;

use super::values::{self, Parsed};
use super::{ApiScheme, Config, JobScheduler, Secret};

/// How a value is applied: the value as written, and whether the key had `extra-`.
pub(super) type Apply = fn(&mut Config, &str, bool) -> Parsed<()>;

pub(super) struct Setting {
    pub name: &'static str,
    /// Older or other names that set the same setting; `origins` records `name`.
    pub aliases: &'static [&'static str],
    /// A list setting: `extra-NAME` appends to it.
    pub list: bool,
    /// The value is never quoted in errors, and files that set it must be private.
    pub secret: bool,
    /// The README's "default" column.
    #[cfg_attr(not(test), allow(dead_code, reason = "read by the README check"))]
    pub default: &'static str,
    /// The README's "meaning" column.
    #[cfg_attr(not(test), allow(dead_code, reason = "read by the README check"))]
    pub doc: &'static str,
    pub apply: Apply,
}

impl Setting {
    const fn new(
        name: &'static str,
        default: &'static str,
        doc: &'static str,
        apply: Apply,
    ) -> Self {
        Setting {
            name,
            aliases: &[],
            list: false,
            secret: false,
            default,
            doc,
            apply,
        }
    }

    const fn list(self) -> Self {
        Setting { list: true, ..self }
    }

    const fn secret(self) -> Self {
        Setting {
            secret: true,
            ..self
        }
    }

    const fn aliases(self, aliases: &'static [&'static str]) -> Self {
        Setting { aliases, ..self }
    }

    /// Whether `key` (without `extra-`) names this setting.
    pub fn is_named(&self, key: &str) -> bool {
        self.name == key || self.aliases.contains(&key)
    }
}

/// The setting `key` names, by name or alias.
pub(super) fn find(key: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.is_named(key))
}

/// The list settings, for the error about `extra-` on anything else.
pub(super) fn list_names() -> String {
    let names: Vec<&str> = SETTINGS.iter().filter(|s| s.list).map(|s| s.name).collect();
    names.join(", ")
}

fn to_path(value: Option<String>) -> Option<PathBuf> {
    value.map(PathBuf::from)
}

pub(super) const SETTINGS: &[Setting] = &[
    Setting::new(
        "job-scheduler",
        "`slurm`",
        "`slurm` (slurmrestd), `slurm-native` (libslurm, loaded at run time), `slurm-cli` \
         (Slurm's commands, an nsh extension) or `pbs` (its commands); see Schedulers",
        |c, v, _| {
            c.job_scheduler =
                JobScheduler::parse(v).ok_or("one of slurm, slurm-native, slurm-cli, pbs")?;
            Ok(())
        },
    ),
    Setting::new(
        "system",
        "`x86_64-linux`",
        "the cluster's system type. Derivations for another system are not sent",
        |c, v, _| {
            c.system = values::system(v)?;
            Ok(())
        },
    ),
    Setting::new(
        "system-features",
        "`nsh`",
        "features the cluster supports. A derivation that requires any other feature is not \
         sent. Also passed to the remote build as `--option system-features`, together with \
         the derivation's own required features",
        |c, v, append| {
            values::set_list(&mut c.system_features, v, append);
            Ok(())
        },
    )
    .list(),
    Setting::new(
        "mandatory-system-features",
        "*(empty)*",
        "features a derivation must require to be sent. With `nsh`, only derivations that ask \
         for `nsh` go to the cluster",
        |c, v, append| {
            values::set_list(&mut c.mandatory_system_features, v, append);
            Ok(())
        },
    )
    .list(),
    Setting::new(
        "store-dir",
        "`/nix/store`",
        "the logical store directory on the remote side. It must equal the local store \
         directory (store paths name it); nsh refuses a build otherwise",
        |c, v, _| {
            c.store_dir = values::store_dir(v)?;
            Ok(())
        },
    ),
    Setting::new(
        "remote-store",
        "`auto`",
        "store URL for the remote `nix-store --store`: `auto`, `daemon`, `local`, `unix://…`, \
         `ssh-ng://…` or an absolute path such as `/local/store` (a user-owned chroot store)",
        |c, v, _| {
            c.remote_store = values::remote_store(v)?;
            Ok(())
        },
    ),
    Setting::new(
        "remote-nix-bin-dir",
        "*(empty)*",
        "Nix's `bin` directory on the cluster, for nodes without Nix. When empty, the agent \
         searches `PATH`, `/nix/var/nix/profiles/default/bin`, `/run/current-system/sw/bin` \
         and `/usr/bin`",
        |c, v, _| {
            let expected = "an absolute directory holding nix-store on the cluster, e.g. \
                            /shared/nix/bin";
            c.remote_nix_bin_dir = values::optional_abs_path(v, expected)?;
            Ok(())
        },
    ),
    Setting::new(
        "collect-garbage",
        "`false`",
        "run `nix-store --gc` on `remote-store` when the job ends, unless another nsh job \
         still uses that store (then the last one out collects) (`true`/`false`, also \
         `yes`/`no`/`1`/`0`)",
        |c, v, _| {
            c.collect_garbage = values::bool(v)?;
            Ok(())
        },
    ),
    Setting::new(
        "max-queued-jobs",
        "`0` (no cap)",
        "nsh extension: at most this many of this host's nsh jobs in the queue at once \
         (pending or running, counted across all hook processes). An offer beyond it gets \
         `# postpone` and Nix offers it again after `build-poll-interval` seconds. Set it \
         below the site's per-user limit (`MaxSubmitJobs`); a submission the scheduler \
         refuses for such a limit postpones too",
        |c, v, _| {
            let expected = "a number of jobs, e.g. 100 (0 = no cap); keep it below the site's \
                            per-user job limit";
            c.max_queued_jobs = values::number(v, expected)?;
            Ok(())
        },
    ),
    Setting::new(
        "max-resubmits",
        "`2`",
        "nsh extension: how often a build the infrastructure lost (node failure, preemption, \
         a killed agent, the channel lost past the 45 s reconnect window) is submitted again \
         as a fresh job (on Slurm avoiding the nodes already lost; PBS cannot exclude nodes), before nsh gives up with exit 1. \
         `0` = never; at most 20. Never after an output came back, and never for a failing \
         builder (exit 100), a timeout (101) or a setup problem",
        |c, v, _| {
            let n = values::number(v, values::MAX_RESUBMITS_EXPECTED)?;
            if n > values::MAX_RESUBMITS_LIMIT {
                return Err(values::MAX_RESUBMITS_EXPECTED.into());
            }
            c.max_resubmits = n;
            Ok(())
        },
    ),
    Setting::new(
        "state-dir",
        "required",
        "absolute path on the cluster where nsh keeps the agent binaries (`agents/`) and \
         per-job dirs (`jobs/<key>/`). Every node must see it; a directory in your home is \
         recommended. `slurm-state-dir` is its older name and still accepted: the two are one \
         setting, so whichever comes later wins",
        |c, v, _| {
            c.state_dir = values::state_dir(v)?;
            Ok(())
        },
    )
    .aliases(&["slurm-state-dir"]),
    Setting::new(
        "login-host",
        "*(empty: this machine)*",
        "nsh extension, for `pbs` and `slurm-cli`: the host on which the scheduler's commands \
         (`qsub`, `qstat`, `qdel`; `sbatch`, `squeue`, `scontrol`, `scancel`) run, over SSH: a \
         host name or an ssh config alias, without `user@` (the user comes from ssh config, and \
         the jobs run as that user). When empty, they run on this machine. Setting it with \
         `slurm` (which talks to slurmrestd) or `slurm-native` (libslurm) is an error",
        |c, v, _| {
            c.login_host = values::login_host(v)?;
            Ok(())
        },
    ),
    Setting::new(
        "scheduler-bin-dir",
        "*(empty: `PATH`)*",
        "nsh extension, for `pbs` and `slurm-cli`: absolute directory holding the scheduler's \
         commands, e.g. `/opt/pbs/bin` or `/opt/slurm/bin`, on the login host if `login-host` \
         is set. When empty, they are found on `PATH` (of this machine, or of the login host's \
         ssh session)",
        |c, v, _| {
            let expected = "an absolute directory holding the scheduler's commands (on the \
                            login-host if one is set), e.g. /opt/pbs/bin, or nothing to find \
                            them on PATH";
            c.scheduler_bin_dir = values::optional_abs_path(v, expected)?;
            Ok(())
        },
    ),
    Setting::new(
        "job-user",
        "*(empty)*",
        "nsh extension, for `slurm-native`, `slurm-cli` and `pbs` without `login-host`: the \
         user whose jobs nsh submits when the hook runs as root (as it does under \
         nix-daemon). `slurm-native` submits on that user's behalf (root may, in Slurm); the \
         commands of `slurm-cli` and `pbs` run as that user. When the hook runs as root and \
         this is empty, those backends refuse to submit (jobs would run as root) unless \
         `allow-root-jobs = true`. A hook that does not run as root submits as itself, and \
         `job-user`, if set, must name that user",
        |c, v, _| {
            c.job_user = values::user_name(v)?;
            Ok(())
        },
    ),
    Setting::new(
        "allow-root-jobs",
        "`false`",
        "nsh extension: let a root hook with no `job-user` submit jobs that run as root \
         (`slurm-native`, `slurm-cli`, `pbs` without `login-host`). Off by default, since a \
         build job then runs as root on the cluster",
        |c, v, _| {
            c.allow_root_jobs = values::bool(v)?;
            Ok(())
        },
    ),
    Setting::new(
        "slurm-api-host",
        "`localhost`",
        "slurmrestd host name or IP address, without scheme or port",
        |c, v, _| {
            c.slurm_api_host = values::api_host(v)?;
            Ok(())
        },
    ),
    Setting::new(
        "slurm-api-port",
        "`6820`",
        "slurmrestd port (with `https`: the TLS proxy's port)",
        |c, v, _| {
            c.slurm_api_port = values::port(v)?;
            Ok(())
        },
    ),
    Setting::new(
        "slurm-api-scheme",
        "`http`",
        "nsh extension: `http` (the reference tool's transport) or `https` (verified TLS, see \
         [HTTPS to slurmrestd](#https-to-slurmrestd))",
        |c, v, _| {
            c.slurm_api_scheme = ApiScheme::parse(v)
                .ok_or("http or https (https needs TLS in front of slurmrestd)")?;
            Ok(())
        },
    ),
    Setting::new(
        "slurm-api-ca-file",
        "*(empty: built-in roots)*",
        "nsh extension: absolute path to a PEM bundle. With `https`, only its CAs are trusted \
         for slurmrestd. A missing or unreadable file, one with no certificate, or setting it \
         with `slurm-api-scheme = http` is an error",
        |c, v, _| {
            let expected = "an absolute path to a PEM file with the CA certificate(s) for \
                            slurmrestd, or nothing for the built-in roots";
            c.slurm_api_ca_file = to_path(values::optional_abs_path(v, expected)?);
            Ok(())
        },
    ),
    Setting::new(
        "slurm-api-version",
        "*(empty: negotiate)*",
        "nsh extension: force a REST API version such as `v0.0.42`, one nsh speaks \
         (`v0.0.38` to `v0.0.45`). It must be one the server serves",
        |c, v, _| {
            c.slurm_api_version = values::api_version(v)?;
            Ok(())
        },
    ),
    Setting::new(
        "slurm-jwt-token",
        "required (`slurm`)",
        "JWT for slurmrestd. Takes the token alone or the `SLURM_JWT=…` line that `scontrol \
         token` prints. nsh warns if the file that sets it is readable by group or others",
        |c, v, _| {
            c.slurm_jwt_token = values::jwt(v)?.map(Secret);
            Ok(())
        },
    )
    .secret(),
    Setting::new(
        "slurm-extra-submission-params",
        "`{}`",
        "JSON object merged into the `job` object of the submit request. It overrides the \
         derivation's `extraSlurmParams` (shallow: a key replaces the derivation's value \
         whole). It may not name a field nsh sets itself (see [Security](#security))",
        |c, v, _| {
            c.slurm_extra_submission_params = values::submission_params(v)?;
            Ok(())
        },
    ),
    Setting::new(
        "allowed-job-params",
        "*(the backend's default set, below)*",
        "nsh extension: the keys a derivation's `extraSlurmParams` may set. Set it to narrow \
         the set; `extra-allowed-job-params = …` widens it. Fields nsh sets itself can never \
         be allowed",
        |c, v, append| {
            let words = values::job_param_names(v)?;
            if append {
                values::set_list(&mut c.extra_allowed_job_params, &words.join(" "), true);
            } else {
                c.allowed_job_params = Some(words);
                c.extra_allowed_job_params.clear();
            }
            Ok(())
        },
    )
    .list(),
    Setting::new(
        "slurm-conf",
        "*(empty)*",
        "path to the `slurm.conf` libslurm reads, for `slurm-native`. When empty, Slurm finds \
         its own (`SLURM_CONF`, then the path it was built with)",
        |c, v, _| {
            let expected = "an absolute path to slurm.conf";
            c.slurm_conf = to_path(values::optional_abs_path(v, expected)?);
            Ok(())
        },
    ),
    Setting::new(
        "slurm-library",
        "*(empty: the dynamic linker's search)*",
        "nsh extension, for `slurm-native`: the libslurm to load, e.g. \
         `/opt/slurm/lib/libslurm.so.42`. When empty, nsh asks the dynamic linker for \
         `libslurm.so` of each Slurm release it supports (newest first), as `ldconfig -p` \
         lists them",
        |c, v, _| {
            let expected = "an absolute path to libslurm.so (e.g. /usr/lib64/libslurm.so.42), \
                            or nothing to let the dynamic linker find it";
            c.slurm_library = to_path(values::optional_abs_path(v, expected)?);
            Ok(())
        },
    ),
    Setting::new(
        "pbs-host",
        "*(empty: from `pbs.conf`)*",
        "PBS server (`PBS_SERVER` of `pbs.conf`). When empty, the server and its port both \
         come from `pbs.conf`",
        |c, v, _| {
            c.pbs_host = values::pbs_host(v)?;
            Ok(())
        },
    ),
    Setting::new(
        "pbs-port",
        "`15001`",
        "PBS server port, used with `pbs-host`. Setting it without `pbs-host` is an error \
         with `job-scheduler = pbs`, as it would be ignored",
        |c, v, _| {
            c.pbs_port = values::port(v)?;
            Ok(())
        },
    ),
];
