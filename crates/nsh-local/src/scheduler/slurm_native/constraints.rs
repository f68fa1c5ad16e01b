//! The derivation's `slurmNativeConstraints`: `{ cpus = 4; memPerNode = 8192; }` (or
//! `memPerCPU`), as the reference tool reads it. Only these three keys exist, all whole
//! numbers, memory in megabytes, the two memory keys exclusive; anything else is refused
//! before the offer is accepted, so nothing is submitted.

use anyhow::{Context, Result};
use nsh_wire::derivation::Derivation;
use serde_json::Value;

use crate::config::Config;
use crate::scheduler::{JobParams, job_params};

/// The derivation attribute read.
pub const ATTR: &str = "slurmNativeConstraints";

/// Its keys, in the README's order.
pub const KEYS: &[&str] = &["cpus", "memPerNode", "memPerCPU"];

/// Most CPUs a task may ask for: `cpus_per_task` is a `uint16_t` whose top values are
/// Slurm's "not set" markers (`NO_VAL16`, `INFINITE16`).
pub const MAX_CPUS: u64 = 65_533;

/// Most megabytes one may ask for (1 EiB): far beyond any node, and far below the bits
/// libslurm uses for `MEM_PER_CPU` and its "not set" markers.
pub const MAX_MEMORY_MB: u64 = 1 << 40;

/// What a derivation asked for; `None`: Slurm's (or the partition's) default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Constraints {
    pub cpus: Option<u16>,
    pub memory: Option<Memory>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Memory {
    /// MB on each node (`pn_min_memory`).
    PerNode(u64),
    /// MB for each allocated CPU (`pn_min_memory | MEM_PER_CPU`).
    PerCpu(u64),
}

/// The derivation's constraints, checked; none if it has no such attribute. An admin's
/// `allowed-job-params` can narrow the three keys (never widen them).
pub fn derivation_params(config: &Config, drv: &Derivation) -> Result<JobParams> {
    let Some(value) = drv
        .attr_json(ATTR)
        .with_context(|| format!("bad attribute '{ATTR}'"))?
    else {
        return Ok(JobParams::SlurmNative(Constraints::default()));
    };
    let refused = |why: String| {
        anyhow::anyhow!(
            "the derivation's {ATTR} {why}; it may set only cpus, memPerNode (MB) or memPerCPU \
             (MB), e.g. {ATTR} = builtins.toJSON {{ cpus = 4; memPerNode = 8192; }}; nothing \
             was submitted"
        )
    };
    let constraints = parse(&value).map_err(refused)?;
    let allowed = job_params::allowed_set(config, KEYS);
    if let Some(key) = value
        .as_object()
        .and_then(|map| map.keys().find(|k| !allowed.contains(k)))
    {
        return Err(refused(format!(
            "sets {key}, which this site's allowed-job-params does not allow"
        )));
    }
    Ok(JobParams::SlurmNative(constraints))
}

/// Checks one `slurmNativeConstraints` value; the error completes "the derivation's
/// slurmNativeConstraints …".
pub fn parse(value: &Value) -> Result<Constraints, String> {
    let Value::Object(map) = value else {
        return Err(format!("is {}, not a JSON object", kind(value)));
    };
    let mut constraints = Constraints::default();
    for (key, v) in map {
        let shown: String = key.chars().take(60).flat_map(char::escape_debug).collect();
        match key.as_str() {
            "cpus" => {
                let n = whole(key, v, 1, MAX_CPUS)?;
                constraints.cpus = Some(u16::try_from(n).map_err(|_| "cpus is too large")?);
            }
            "memPerNode" | "memPerCPU" => {
                let mb = whole(key, v, 1, MAX_MEMORY_MB)?;
                if constraints.memory.is_some() {
                    return Err(
                        "sets both memPerNode and memPerCPU, which exclude each other: \
                                keep one"
                            .into(),
                    );
                }
                constraints.memory = Some(if key == "memPerNode" {
                    Memory::PerNode(mb)
                } else {
                    Memory::PerCpu(mb)
                });
            }
            _ => return Err(format!("has the unknown key '{shown}'")),
        }
    }
    Ok(constraints)
}

/// A whole number in `min..=max` (JSON numbers only: `4`, not `"4"` or `4.5`).
fn whole(key: &str, v: &Value, min: u64, max: u64) -> Result<u64, String> {
    let n = v
        .as_u64()
        .ok_or_else(|| format!("sets {key} to {}, not a whole number", kind(v)))?;
    if !(min..=max).contains(&n) {
        return Err(format!("sets {key} = {n}, outside {min}..={max}"));
    }
    Ok(n)
}

fn kind(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("{b}"),
        Value::Number(n) => format!("{n}"),
        Value::String(_) => "a string".into(),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "an object".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn good_constraints() {
        assert_eq!(parse(&json!({})).unwrap(), Constraints::default());
        assert_eq!(
            parse(&json!({"cpus": 4, "memPerNode": 8192})).unwrap(),
            Constraints {
                cpus: Some(4),
                memory: Some(Memory::PerNode(8192))
            }
        );
        assert_eq!(
            parse(&json!({"memPerCPU": 2048})).unwrap().memory,
            Some(Memory::PerCpu(2048))
        );
        assert_eq!(
            parse(&json!({"cpus": MAX_CPUS})).unwrap().cpus,
            Some(65_533)
        );
    }

    #[test]
    fn bad_constraints() {
        for (value, says) in [
            (json!([]), "not a JSON object"),
            (json!("cpus=4"), "not a JSON object"),
            (json!({"cpu": 4}), "unknown key 'cpu'"),
            (json!({"script": "x"}), "unknown key 'script'"),
            (json!({"cpus": "4"}), "not a whole number"),
            (json!({"cpus": 4.5}), "not a whole number"),
            (json!({"cpus": -1}), "not a whole number"),
            (json!({"cpus": 0}), "outside 1..=65533"),
            (json!({"cpus": 65534}), "outside"),
            (json!({"memPerNode": 0}), "outside"),
            (json!({"memPerNode": MAX_MEMORY_MB + 1}), "outside"),
            (
                json!({"memPerNode": 1, "memPerCPU": 1}),
                "exclude each other",
            ),
            (json!({"memPerCPU": null}), "null, not a whole number"),
            (json!({"x\ny": 1}), "unknown key 'x\\ny'"),
        ] {
            let err = parse(&value).unwrap_err();
            assert!(err.contains(says), "{value}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }
}
