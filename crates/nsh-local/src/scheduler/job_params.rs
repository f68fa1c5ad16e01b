//! The trust rule for per-derivation scheduler parameters: a derivation may ask for
//! resources and placement, never for control.
//!
//! nsh runs as root under nix-daemon and submits with the site's credentials, so any local
//! user who may build can write a derivation. Its attribute (`extraSlurmParams` today;
//! `slurmNativeConstraints` and `pbsResources` for the backends to come) is checked here,
//! before anything is submitted (`pbsResources`: [`PBS_ALLOWED`], [`PBS_RESERVED`]):
//!
//! - every key must be in the allowed set: the backend's documented default
//!   ([`SLURM_REST_ALLOWED`]) or the admin's `allowed-job-params` in `nsh.conf`;
//! - a key nsh sets itself ([`SLURM_REST_RESERVED`]: the script, its environment, where its
//!   output goes, its working directory, as whom it runs, requeueing, the name) is refused
//!   even if the admin listed it, and nsh's own value always wins over the admin's
//!   `slurm-extra-submission-params` too;
//! - text values hold no control characters, and a value that a text-based backend passes
//!   as a command-line option's argument ([`check_option_word`]) cannot start a new option
//!   or, where the backend says so, a new list item.
//!
//! The admin's `nsh.conf` is trusted: this guards against derivations, not against it.

use serde_json::{Map, Value};

/// Derivation-level `extraSlurmParams` keys allowed by default: resources and placement in
/// the `job` object of slurmrestd's `/job/submit` (names of v0.0.38 – v0.0.45).
pub const SLURM_REST_ALLOWED: &[&str] = &[
    // CPUs
    "cpus_per_task",
    "minimum_cpus",
    "maximum_cpus",
    "minimum_cpus_per_node",
    "cpus_per_tres",
    "cpus_per_gpu",
    "threads_per_core",
    "cores_per_socket",
    "sockets_per_node",
    // memory and local disk
    "memory_per_node",
    "memory_per_cpu",
    "memory_per_tres",
    "memory_per_gpu",
    "temporary_disk_per_node",
    "tmp_disk_per_node",
    // GPUs and other TRES
    "tres_per_job",
    "tres_per_node",
    "tres_per_socket",
    "tres_per_task",
    "gres",
    "gpus",
    "gpus_per_node",
    "gpus_per_socket",
    "gpus_per_task",
    "licenses",
    // nodes and tasks
    "nodes",
    "minimum_nodes",
    "maximum_nodes",
    "tasks",
    "tasks_per_node",
    "tasks_per_socket",
    "tasks_per_core",
    "tasks_per_board",
    "ntasks_per_tres",
    "exclusive",
    "contiguous",
    // time
    "time_limit",
    "time_minimum",
    // where it runs and who pays
    "partition",
    "qos",
    "account",
    "reservation",
    "constraints",
    "prefer",
    "required_nodes",
    "excluded_nodes",
    "cluster_constraint",
    "wckey",
    "comment",
];

/// `job` fields nsh sets itself. Neither a derivation nor `slurm-extra-submission-params`
/// can set them: they decide what runs, in which environment, where its output goes and as
/// whom (`v0.0.38` spells the no-requeue flag `no_requeue`).
pub const SLURM_REST_RESERVED: &[&str] = &[
    "script",
    "environment",
    "standard_input",
    "standard_output",
    "standard_error",
    "current_working_directory",
    "name",
    "requeue",
    "no_requeue",
    "user_id",
    "group_id",
    "user",
    "group",
    "argv",
    "container",
    "container_id",
];

/// Derivation-level `pbsResources` names allowed by default: `-l` resources that ask for
/// CPUs, memory, GPUs, time and placement, as OpenPBS, PBS Professional and Torque name them.
pub const PBS_ALLOWED: &[&str] = &[
    // CPUs, memory, GPUs
    "ncpus",
    "mem",
    "vmem",
    "pmem",
    "pvmem",
    "ngpus",
    "gpus",
    "naccelerators",
    "accelerator_model",
    "mpiprocs",
    "ompthreads",
    // time
    "walltime",
    "cput",
    "pcput",
    // chunks and placement (`select=2:ncpus=4`, `place=scatter`; Torque `nodes=1:ppn=4`)
    "select",
    "place",
    "nodes",
    "nodect",
    "ppn",
    "host",
    "arch",
    "feature",
    "file",
    "software",
];

/// `-l` resources nsh never passes, even if the admin allows them: Torque's `prologue` and
/// `epilogue` name scripts to run around the job, and the others change what runs, as whom,
/// where its output goes or whether it is rerun (`qsub` options in resource form).
pub const PBS_RESERVED: &[&str] = &[
    "prologue",
    "epilogue",
    "depend",
    "stagein",
    "stageout",
    "user_list",
    "group_list",
    "euser",
    "egroup",
    "shell_path_list",
    "Output_Path",
    "Error_Path",
    "Join_Path",
    "Keep_Files",
    "Variable_List",
    "Rerunable",
    "Job_Name",
    "Execution_Time",
    "interactive",
    "block",
    "sandbox",
    "jobdir",
    "umask",
];

/// Why a derivation's scheduler parameters were refused. The caller adds which derivation.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParamError {
    #[error(
        "'{attr}' sets `{key}`, which nsh sets itself (it decides what the job runs, its \
         environment, where its output goes or as whom it runs); remove it from the derivation"
    )]
    Reserved { attr: &'static str, key: String },
    #[error(
        "'{attr}' sets `{key}`, which derivations may not set: they may ask for resources \
         and placement only. Allowed: {allowed}. (An admin can allow more with \
         `extra-allowed-job-params` in nsh.conf.)"
    )]
    NotAllowed {
        attr: &'static str,
        key: String,
        allowed: String,
    },
    #[error("'{attr}': the value of `{key}` {why}")]
    BadValue {
        attr: &'static str,
        key: String,
        why: &'static str,
    },
    #[error("'{attr}' must be a JSON object (builtins.toJSON {{ … }}), not {got}")]
    NotAnObject { attr: &'static str, got: String },
}

/// The allowed set for one backend: the admin's `allowed-job-params` if set, else `default`,
/// plus `extra-allowed-job-params`.
pub fn allowed_set(config: &crate::config::Config, default: &[&str]) -> Vec<String> {
    let mut set: Vec<String> = match &config.allowed_job_params {
        Some(list) => list.clone(),
        None => default.iter().map(|s| (*s).to_owned()).collect(),
    };
    for extra in &config.extra_allowed_job_params {
        if !set.contains(extra) {
            set.push(extra.clone());
        }
    }
    set
}

/// Checks a derivation's parameter object: every key allowed and not reserved, every text
/// value free of control characters (at any depth).
pub fn check_derivation_params(
    attr: &'static str,
    value: Value,
    allowed: &[String],
    reserved: &[&str],
) -> Result<Map<String, Value>, ParamError> {
    let params = match value {
        Value::Object(map) => map,
        other => {
            return Err(ParamError::NotAnObject {
                attr,
                got: json_kind(&other).into(),
            });
        }
    };
    for (key, value) in &params {
        if reserved.contains(&key.as_str()) {
            return Err(ParamError::Reserved {
                attr,
                key: printable(key),
            });
        }
        if !allowed.iter().any(|a| a == key) {
            return Err(ParamError::NotAllowed {
                attr,
                key: printable(key),
                allowed: allowed.join(", "),
            });
        }
        if has_control_chars(value) {
            return Err(ParamError::BadValue {
                attr,
                key: key.clone(),
                why: "contains control characters (newlines, tabs, …)",
            });
        }
    }
    Ok(params)
}

/// For backends that put a value on a command line (`qsub -l name=value`, `sbatch
/// --opt=value`): the word must not start a new option, and must not hold any of `separators`
/// (e.g. `,`, which starts another resource in `-l`). Names also stay within
/// `[A-Za-z0-9_.-]`.
pub fn check_option_word(
    attr: &'static str,
    name: &str,
    value: &str,
    separators: &[char],
) -> Result<(), ParamError> {
    if !is_param_name(name) || name.starts_with('-') {
        return Err(ParamError::BadValue {
            attr,
            key: printable(name),
            why: "(the name) must be letters, digits, '_', '.' or '-', not starting with '-'",
        });
    }
    let why = if value.is_empty() {
        Some("is empty")
    } else if value.starts_with('-') {
        Some("starts with '-' (it would read as an option)")
    } else if value.chars().any(char::is_control) {
        Some("contains control characters (newlines, tabs, …)")
    } else if value.contains(separators) {
        Some("contains a separator that would start another option or resource")
    } else {
        None
    };
    match why {
        Some(why) => Err(ParamError::BadValue {
            attr,
            key: name.to_owned(),
            why,
        }),
        None => Ok(()),
    }
}

/// A parameter name: letters, digits, `_`, `.` and `-`, not empty.
pub fn is_param_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Admin-side check of `slurm-extra-submission-params` and `allowed-job-params`: a reserved
/// name there would be ignored (nsh's value wins), so it is refused as a config error.
pub fn reserved_in<'a>(names: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    names.into_iter().find(|n| SLURM_REST_RESERVED.contains(n))
}

fn has_control_chars(value: &Value) -> bool {
    match value {
        Value::String(s) => s.chars().any(char::is_control),
        Value::Array(items) => items.iter().any(has_control_chars),
        Value::Object(map) => map
            .iter()
            .any(|(k, v)| k.chars().any(char::is_control) || has_control_chars(v)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

/// A key for a message: control characters escaped, cut to 60 characters.
fn printable(key: &str) -> String {
    key.chars().take(60).flat_map(char::escape_debug).collect()
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn allowed() -> Vec<String> {
        SLURM_REST_ALLOWED.iter().map(|s| (*s).to_owned()).collect()
    }

    fn check(v: Value) -> Result<Map<String, Value>, ParamError> {
        check_derivation_params("extraSlurmParams", v, &allowed(), SLURM_REST_RESERVED)
    }

    #[test]
    fn resources_pass() {
        let m = check(json!({
            "cpus_per_task": 4,
            "memory_per_node": {"set": true, "number": 1024},
            "partition": "debug",
            "tres_per_node": "gres/gpu:1",
            "time_limit": {"set": true, "number": 30},
        }))
        .unwrap();
        assert_eq!(m.len(), 5);
    }

    #[test]
    fn every_reserved_key_is_refused_by_name() {
        for key in SLURM_REST_RESERVED {
            let err = check(json!({ *key: "x" })).unwrap_err();
            assert!(matches!(&err, ParamError::Reserved { key: k, .. } if k.as_str() == *key));
            assert!(err.to_string().contains(&format!("`{key}`")), "{err}");
        }
    }

    #[test]
    fn reserved_wins_even_when_allowed() {
        let mut allowed = allowed();
        allowed.push("script".into());
        let err = check_derivation_params(
            "extraSlurmParams",
            json!({"script": "#!/bin/sh\nid\n"}),
            &allowed,
            SLURM_REST_RESERVED,
        )
        .unwrap_err();
        assert!(matches!(err, ParamError::Reserved { .. }));
    }

    #[test]
    fn unknown_key_names_key_and_allowed_set() {
        let err = check(json!({"cpus_per_task": 1, "mail_user": "x@y"})).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("`mail_user`"), "{text}");
        assert!(text.contains("cpus_per_task, minimum_cpus"), "{text}");
        assert!(text.contains("extra-allowed-job-params"), "{text}");
    }

    #[test]
    fn keys_differing_in_case_are_not_allowed() {
        assert!(matches!(
            check(json!({"Script": "x"})).unwrap_err(),
            ParamError::NotAllowed { .. }
        ));
    }

    #[test]
    fn control_characters_in_values_are_refused() {
        let err = check(json!({"comment": "a\nb"})).unwrap_err();
        assert!(matches!(err, ParamError::BadValue { .. }));
        let err = check(json!({"tres_per_node": ["ok", {"x\u{1b}": 1}]})).unwrap_err();
        assert!(matches!(err, ParamError::BadValue { .. }));
    }

    #[test]
    fn not_an_object() {
        let err = check(json!([1, 2])).unwrap_err();
        assert_eq!(
            err,
            ParamError::NotAnObject {
                attr: "extraSlurmParams",
                got: "an array".into()
            }
        );
    }

    #[test]
    fn option_words() {
        let ok = |n, v| check_option_word("pbsResources", n, v, &[',']).is_ok();
        assert!(ok("ncpus", "4"));
        assert!(ok("select", "2:ncpus=4:mem=1gb"));
        assert!(ok("walltime", "01:00:00"));
        assert!(!ok("ncpus", "-4"));
        assert!(!ok("ncpus", "4,walltime=99:00:00"));
        assert!(!ok("ncpus", "4\n#PBS -o /etc/x"));
        assert!(!ok("ncpus", ""));
        assert!(!ok("-o", "x"));
        assert!(!ok("a b", "x"));
        assert!(!ok("a=b", "x"));
        assert!(!ok("", "x"));
    }

    #[test]
    fn reserved_in_admin_settings() {
        assert_eq!(
            reserved_in(["partition", "environment"]),
            Some("environment")
        );
        assert_eq!(reserved_in(["partition", "qos"]), None);
    }
}
