//! The derivation's `extraSlurmParams` (slurmrestd's `job` object keys, checked by
//! [`job_params`] exactly as for the REST backend) with the admin's
//! `slurm-extra-submission-params` over it, each key as ONE `sbatch --name=value` word.
//!
//! A key of the allowed set that sbatch has no option for is an error naming it, never
//! dropped. Values are single option words ([`check_option_word`]): they cannot start
//! another option, and hold no white space (so `scontrol show job -o`, which nsh reads
//! back, stays unambiguous).

use anyhow::{Context, Result};
use nsh_wire::derivation::Derivation;
use serde_json::{Map, Value};

use crate::config::Config;
use crate::scheduler::JobParams;
use crate::scheduler::job_params::{
    self, ParamError, SLURM_REST_ALLOWED, SLURM_REST_RESERVED, check_option_word,
};

/// The derivation attribute read (the reference's name).
pub const ATTR: &str = "extraSlurmParams";

/// The option that `excluded_nodes` becomes; the backend merges its own exclusions into it.
pub const EXCLUDE: &str = "--exclude=";

/// How a key's value is written.
#[derive(Clone, Copy)]
enum Kind {
    /// A non-negative integer: a number, `{set, number}`, or a string of digits.
    Count,
    /// Megabytes, as [`Kind::Count`], written with an `M` suffix.
    Megabytes,
    /// Minutes, as [`Kind::Count`]; `{infinite: true}` is `UNLIMITED`.
    Minutes,
    /// A text value (or a number, written as is).
    Text,
    /// A node list: a string or an array of names, written comma-separated.
    Nodes,
    /// `true`: the bare flag; `false`: nothing (Slurm's default).
    Flag,
    /// `exclusive`: `true` → `--exclusive`, a string → `--exclusive=user|mcs|topo`.
    Exclusive,
}

/// Key → (sbatch option, how its value is written). Keys of [`SLURM_REST_ALLOWED`] not
/// listed here have no sbatch option (see [`UNMAPPED`]).
const MAPPING: &[(&str, &str, Kind)] = &[
    ("cpus_per_task", "--cpus-per-task", Kind::Count),
    ("minimum_cpus_per_node", "--mincpus", Kind::Count),
    ("cpus_per_gpu", "--cpus-per-gpu", Kind::Count),
    ("threads_per_core", "--threads-per-core", Kind::Count),
    ("cores_per_socket", "--cores-per-socket", Kind::Count),
    ("sockets_per_node", "--sockets-per-node", Kind::Count),
    ("memory_per_node", "--mem", Kind::Megabytes),
    ("memory_per_cpu", "--mem-per-cpu", Kind::Megabytes),
    ("memory_per_gpu", "--mem-per-gpu", Kind::Megabytes),
    ("temporary_disk_per_node", "--tmp", Kind::Megabytes),
    ("tmp_disk_per_node", "--tmp", Kind::Megabytes),
    ("gres", "--gres", Kind::Text),
    ("gpus", "--gpus", Kind::Text),
    ("gpus_per_node", "--gpus-per-node", Kind::Text),
    ("gpus_per_socket", "--gpus-per-socket", Kind::Text),
    ("gpus_per_task", "--gpus-per-task", Kind::Text),
    ("licenses", "--licenses", Kind::Text),
    ("nodes", "--nodes", Kind::Text),
    ("minimum_nodes", "--nodes", Kind::Count),
    ("tasks", "--ntasks", Kind::Count),
    ("tasks_per_node", "--ntasks-per-node", Kind::Count),
    ("tasks_per_socket", "--ntasks-per-socket", Kind::Count),
    ("tasks_per_core", "--ntasks-per-core", Kind::Count),
    ("exclusive", "--exclusive", Kind::Exclusive),
    ("contiguous", "--contiguous", Kind::Flag),
    ("time_limit", "--time", Kind::Minutes),
    ("time_minimum", "--time-min", Kind::Minutes),
    ("partition", "--partition", Kind::Text),
    ("qos", "--qos", Kind::Text),
    ("account", "--account", Kind::Text),
    ("reservation", "--reservation", Kind::Text),
    ("constraints", "--constraint", Kind::Text),
    ("prefer", "--prefer", Kind::Text),
    ("required_nodes", "--nodelist", Kind::Nodes),
    ("excluded_nodes", "--exclude", Kind::Nodes),
    ("cluster_constraint", "--cluster-constraint", Kind::Text),
    ("wckey", "--wckey", Kind::Text),
    ("comment", "--comment", Kind::Text),
];

/// The keys [`MAPPING`] maps, for tests.
#[cfg(test)]
pub const MAPPING_KEYS: [&str; MAPPING.len()] = {
    let mut keys = [""; MAPPING.len()];
    let mut i = 0;
    while i < MAPPING.len() {
        keys[i] = MAPPING[i].0;
        i += 1;
    }
    keys
};

/// Allowed `job` keys sbatch has no single option for, with what to use instead.
pub const UNMAPPED: &[(&str, &str)] = &[
    (
        "minimum_cpus",
        "has no sbatch option (job-scheduler = slurm-cli): use cpus_per_task and tasks",
    ),
    (
        "maximum_cpus",
        "has no sbatch option (job-scheduler = slurm-cli): use cpus_per_task and tasks",
    ),
    (
        "maximum_nodes",
        "has no sbatch option (job-scheduler = slurm-cli): use nodes = \"MIN-MAX\"",
    ),
    (
        "cpus_per_tres",
        "has no sbatch option (job-scheduler = slurm-cli): use cpus_per_gpu",
    ),
    (
        "memory_per_tres",
        "has no sbatch option (job-scheduler = slurm-cli): use memory_per_gpu",
    ),
    (
        "tres_per_job",
        "has no sbatch option (job-scheduler = slurm-cli): use gpus or licenses",
    ),
    (
        "tres_per_node",
        "has no sbatch option (job-scheduler = slurm-cli): use gres or gpus_per_node",
    ),
    (
        "tres_per_socket",
        "has no sbatch option (job-scheduler = slurm-cli): use gpus_per_socket",
    ),
    (
        "tres_per_task",
        "has no sbatch option (job-scheduler = slurm-cli): use gpus_per_task",
    ),
    (
        "tasks_per_board",
        "has no sbatch option (job-scheduler = slurm-cli): use tasks_per_node",
    ),
    (
        "ntasks_per_tres",
        "has no sbatch option (job-scheduler = slurm-cli): use tasks and gpus",
    ),
];

/// The derivation's `extraSlurmParams` (checked) with the admin's settings over it, as
/// sbatch options.
pub fn derivation_params(config: &Config, drv: &Derivation) -> Result<JobParams> {
    let mut params = Map::new();
    if let Some(value) = drv
        .attr_json(ATTR)
        .with_context(|| format!("bad attribute '{ATTR}'"))?
    {
        let allowed = job_params::allowed_set(config, SLURM_REST_ALLOWED);
        params = job_params::check_derivation_params(ATTR, value, &allowed, SLURM_REST_RESERVED)?;
    }
    with_admin_params(config, params)
}

/// `params` with `slurm-extra-submission-params` over it, as sbatch options.
pub fn with_admin_params(config: &Config, mut params: Map<String, Value>) -> Result<JobParams> {
    for (k, v) in &config.slurm_extra_submission_params {
        params.insert(k.clone(), v.clone());
    }
    let words = sbatch_options(&params).context(
        "job-scheduler = slurm-cli (keys from the derivation's extraSlurmParams or from \
         slurm-extra-submission-params in nsh.conf)",
    )?;
    Ok(JobParams::SlurmCli(words))
}

/// Each key as one sbatch option word, in the map's order.
pub fn sbatch_options(params: &Map<String, Value>) -> Result<Vec<String>, ParamError> {
    let mut words = Vec::new();
    for (key, value) in params {
        if let Some(word) = option_word(key, value)? {
            words.push(word);
        }
    }
    Ok(words)
}

fn option_word(key: &str, value: &Value) -> Result<Option<String>, ParamError> {
    let bad = |why: &'static str| ParamError::BadValue {
        attr: ATTR,
        key: key.to_owned(),
        why,
    };
    let Some((_, option, kind)) = MAPPING.iter().find(|(k, _, _)| *k == key) else {
        let why = match UNMAPPED.iter().find(|(k, _)| *k == key) {
            Some((_, why)) => why,
            None => "has no sbatch option nsh knows (job-scheduler = slurm-cli); remove it",
        };
        return Err(bad(why));
    };
    let text = match kind {
        Kind::Count => count(value).ok_or_else(|| bad(COUNT))?.to_string(),
        Kind::Megabytes => format!("{}M", count(value).ok_or_else(|| bad(COUNT))?),
        Kind::Minutes => match value {
            Value::Object(o) if o.get("infinite").and_then(Value::as_bool) == Some(true) => {
                "UNLIMITED".to_owned()
            }
            _ => count(value).ok_or_else(|| bad(COUNT))?.to_string(),
        },
        Kind::Text => match value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => return Err(bad("must be a string or a number")),
        },
        Kind::Nodes => nodes(value).ok_or_else(|| bad("must be a string or a list of strings"))?,
        Kind::Flag => match value {
            Value::Bool(true) => return Ok(Some((*option).to_owned())),
            Value::Bool(false) => return Ok(None),
            _ => return Err(bad("must be true or false")),
        },
        Kind::Exclusive => match value {
            Value::Bool(true) => return Ok(Some((*option).to_owned())),
            Value::Bool(false) => return Ok(None),
            Value::String(s) if matches!(s.as_str(), "user" | "mcs" | "topo") => s.clone(),
            _ => return Err(bad("must be true, false, \"user\", \"mcs\" or \"topo\"")),
        },
    };
    check_option_word(ATTR, key, &text, &[' '])?;
    Ok(Some(format!("{option}={text}")))
}

const COUNT: &str = "must be a non-negative whole number (or {\"set\": true, \"number\": N})";

fn count(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse().ok()
        }
        Value::Object(o) => {
            let set = o.get("set").and_then(Value::as_bool).unwrap_or(false);
            let infinite = o.get("infinite").and_then(Value::as_bool).unwrap_or(false);
            if set && !infinite {
                o.get("number").and_then(Value::as_u64)
            } else {
                None
            }
        }
        _ => None,
    }
}

fn nodes(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Array(items) => {
            let names: Option<Vec<&str>> = items.iter().map(Value::as_str).collect();
            Some(names?.join(","))
        }
        _ => None,
    }
}

/// The options with `hosts` merged into any `--exclude=` among them (one word).
pub fn with_excluded(words: &[String], hosts: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(words.len() + 1);
    let mut excluded: Vec<String> = Vec::new();
    for w in words {
        match w.strip_prefix(EXCLUDE) {
            Some(list) => {
                excluded.extend(list.split(',').filter(|n| !n.is_empty()).map(str::to_owned))
            }
            None => out.push(w.clone()),
        }
    }
    for h in hosts {
        if !excluded.contains(h) {
            excluded.push(h.clone());
        }
    }
    if !excluded.is_empty() {
        out.push(format!("{EXCLUDE}{}", excluded.join(",")));
    }
    out
}
