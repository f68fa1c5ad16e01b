//! The `cores` the node's Nix builds with: the user's, or else the CPUs the scheduler
//! allocated to this job on this node.
//!
//! The job script names the variables that carry the allocation
//! ([`nsh_wire::agent_protocol::JOB_CPUS_VARS_ENV`], chosen by the backend); the agent takes
//! the first one set. Its value comes from the cluster, so it must be a decimal integer in
//! `1..=65535`; anything else is ignored with the reason logged, and the agent falls back
//! to its CPU affinity mask (which Slurm's task/affinity or cgroup plugins also set).

use nsh_wire::agent_protocol::JOB_CPUS_VARS_ENV;

use crate::log::log;

/// Where the job's CPU count came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The named job environment variable.
    Var(String),
    /// The agent's CPU affinity mask (no usable variable).
    Affinity,
}

/// The cores to build with and the line the build log shows about them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cores {
    pub cores: u32,
    pub message: String,
}

/// Most CPUs a value may claim: anything larger is not a count.
const MAX_CPUS: u32 = 65535;

/// A CPU count from the job environment: decimal digits only, `1..=65535`.
pub fn parse_count(value: &str) -> Result<u32, String> {
    let shown: String = value.chars().take(40).collect();
    if value.is_empty() || value.len() > 5 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{shown:?} is not a decimal CPU count"));
    }
    match value.parse::<u32>() {
        Ok(n) if (1..=MAX_CPUS).contains(&n) => Ok(n),
        _ => Err(format!("{shown:?} is not in 1..={MAX_CPUS}")),
    }
}

/// The job's CPUs from the variables `names` lists, read with `get`; the reasons for
/// variables that were set but unusable are pushed to `ignored`.
pub fn from_env(
    names: &str,
    get: impl Fn(&str) -> Option<String>,
    ignored: &mut Vec<String>,
) -> Option<(u32, Source)> {
    for name in names.split_ascii_whitespace().take(8) {
        let Some(value) = get(name) else { continue };
        match parse_count(value.trim()) {
            Ok(n) => return Some((n, Source::Var(name.to_owned()))),
            Err(e) => ignored.push(format!("ignoring {name}: {e}")),
        }
    }
    None
}

/// CPUs in this process's affinity mask; `None` if the kernel does not say.
pub fn affinity_cpus() -> Option<u32> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity writes at most its size.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return None;
    }
    // SAFETY: `set` was filled in by the kernel.
    let n = unsafe { libc::CPU_COUNT(&set) };
    u32::try_from(n).ok().filter(|n| *n >= 1)
}

/// Decides the cores: the user's `requested` if set, else the job's CPUs (`job`), else 1.
pub fn choose(requested: Option<u32>, job: Option<(u32, Source)>, host: &str) -> Cores {
    let cpus = |n: u32| {
        if n == 1 {
            "1 CPU".to_owned()
        } else {
            format!("{n} CPUs")
        }
    };
    let got = |n: u32, src: &Source| match src {
        Source::Var(v) => format!("{} on {host}, from {v}", cpus(n)),
        Source::Affinity => format!(
            "{} on {host}, from its affinity mask: the scheduler named no CPU count",
            cpus(n)
        ),
    };
    match (requested, job) {
        (Some(user), Some((n, src))) => Cores {
            cores: user,
            message: format!(
                "nsh: building with cores = {user} (set by you; the job has {})",
                got(n, &src)
            ),
        },
        (Some(user), None) => Cores {
            cores: user,
            message: format!("nsh: building with cores = {user} (set by you)"),
        },
        (None, Some((n, src))) => Cores {
            cores: n,
            message: format!(
                "nsh: building with cores = {n} (the job's {})",
                got(n, &src)
            ),
        },
        (None, None) => Cores {
            cores: 1,
            message: format!(
                "nsh: building with cores = 1: neither the job's environment nor its \
                 affinity mask on {host} says how many CPUs it has"
            ),
        },
    }
}

/// [`choose`] with this process's environment and affinity mask; logs ignored values.
pub fn for_this_job(requested: Option<u32>, host: &str) -> Cores {
    let names = std::env::var(JOB_CPUS_VARS_ENV).unwrap_or_default();
    let mut ignored = Vec::new();
    let job = from_env(&names, |n| std::env::var(n).ok(), &mut ignored)
        .or_else(|| affinity_cpus().map(|n| (n, Source::Affinity)));
    for reason in ignored {
        log!("{reason}");
    }
    choose(requested, job, host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts() {
        assert_eq!(parse_count("2"), Ok(2));
        assert_eq!(parse_count("65535"), Ok(65535));
        for bad in [
            "",
            "0",
            "65536",
            "99999",
            "-1",
            "+2",
            " 2",
            "2x",
            "0x10",
            "1e3",
            "２",
            "4294967297",
        ] {
            assert!(parse_count(bad).is_err(), "{bad:?}");
        }
        let long = "7".repeat(1000);
        let err = parse_count(&long).unwrap_err();
        assert!(err.len() < 100, "{err}");
    }

    #[test]
    fn env_order_and_hostile_values() {
        let env = |n: &str| match n {
            "NCPUS" => Some("lots".into()),
            "PBS_NUM_PPN" => Some("0".into()),
            "SLURM_CPUS_ON_NODE" => Some("3\n".into()),
            _ => None,
        };
        let mut ignored = Vec::new();
        let got = from_env("NCPUS PBS_NUM_PPN SLURM_CPUS_ON_NODE", env, &mut ignored);
        assert_eq!(got, Some((3, Source::Var("SLURM_CPUS_ON_NODE".into()))));
        assert_eq!(ignored.len(), 2, "{ignored:?}");
        assert!(ignored[0].contains("NCPUS"), "{ignored:?}");
        let mut ignored = Vec::new();
        assert_eq!(from_env("", env, &mut ignored), None);
        assert_eq!(from_env("UNSET", env, &mut ignored), None);
        assert!(ignored.is_empty());
    }

    #[test]
    fn choice_and_message() {
        let slurm = Some((2, Source::Var("SLURM_CPUS_ON_NODE".into())));
        let c = choose(None, slurm.clone(), "node1");
        assert_eq!(c.cores, 2);
        assert_eq!(
            c.message,
            "nsh: building with cores = 2 (the job's 2 CPUs on node1, from SLURM_CPUS_ON_NODE)"
        );
        let c = choose(Some(1), slurm, "node1");
        assert_eq!(c.cores, 1);
        assert!(
            c.message
                .contains("set by you; the job has 2 CPUs on node1, from SLURM_CPUS_ON_NODE"),
            "{}",
            c.message
        );
        let c = choose(None, Some((4, Source::Affinity)), "n");
        assert_eq!(c.cores, 4);
        assert!(c.message.contains("affinity mask"), "{}", c.message);
        assert_eq!(choose(None, None, "n").cores, 1);
        let c = choose(None, Some((1, Source::Var("NCPUS".into()))), "n");
        assert!(c.message.contains("the job's 1 CPU on n,"), "{}", c.message);
        assert_eq!(choose(Some(7), None, "n").cores, 7);
    }

    #[test]
    fn affinity_is_positive() {
        assert!(affinity_cpus().is_some_and(|n| n >= 1));
    }
}
