//! The derivation's `pbsResources`: a JSON object of strings, each passed as
//! `-l name=value`. Checked by the trust rule of [`job_params`] (resources and placement
//! only) and by [`check_option_word`], so no value can start another option or another
//! resource inside its `-l`.

use anyhow::{Context, Result};
use nsh_wire::derivation::Derivation;
use serde_json::Value;

use crate::config::Config;
use crate::scheduler::JobParams;
use crate::scheduler::job_params::{
    self, PBS_ALLOWED, PBS_RESERVED, ParamError, check_option_word,
};

/// The derivation attribute read.
pub const ATTR: &str = "pbsResources";

/// What may not appear in a resource value: `,` starts another resource inside one `-l`,
/// quotes make qsub's parser join what follows, and white space ends the value for some
/// qsub versions (the rest would be read as something else).
const SEPARATORS: &[char] = &[',', '"', '\'', ' '];

/// Beyond those, a value is held to what PBS resources are written with (`4`, `2gb`,
/// `01:00:00`, `2:ncpus=4:mem=1gb+1:ngpus=1`, `scatter:excl`, `node1.cluster`): Slurm's
/// Torque wrappers pass `-l` values to `sbatch` through a shell, unquoted, so `$`, `;`,
/// `|`, backquotes and the like must never reach them.
fn plain_value_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '=' | '+' | '/' | '-')
}

/// The derivation's `pbsResources`, checked; none if it has no such attribute.
pub fn derivation_params(config: &Config, drv: &Derivation) -> Result<JobParams> {
    let Some(value) = drv
        .attr_json(ATTR)
        .with_context(|| format!("bad attribute '{ATTR}'"))?
    else {
        return Ok(JobParams::Pbs(Vec::new()));
    };
    let allowed = job_params::allowed_set(config, PBS_ALLOWED);
    Ok(JobParams::Pbs(check_resources(value, &allowed)?))
}

/// Checks a `pbsResources` object against `allowed` and [`PBS_RESERVED`]; the resources in
/// the object's order.
pub fn check_resources(
    value: Value,
    allowed: &[String],
) -> Result<Vec<(String, String)>, ParamError> {
    let map = job_params::check_derivation_params(ATTR, value, allowed, PBS_RESERVED)?;
    let mut resources = Vec::with_capacity(map.len());
    for (name, value) in map {
        let Value::String(text) = value else {
            return Err(ParamError::BadValue {
                attr: ATTR,
                key: name,
                why: "must be a string (PBS resources are text: \"4\", \"01:00:00\", \"2gb\")",
            });
        };
        check_pair(&name, &text)?;
        resources.push((name, text));
    }
    Ok(resources)
}

/// One resource as it goes on qsub's command line: the name a parameter name, the value a
/// single option word in PBS resource syntax. Checked again at submission, whatever the
/// resources came from.
pub fn check_pair(name: &str, value: &str) -> Result<(), ParamError> {
    check_option_word(ATTR, name, value, SEPARATORS)?;
    if !value.chars().all(plain_value_char) {
        return Err(ParamError::BadValue {
            attr: ATTR,
            key: name.to_owned(),
            why: "may hold only letters, digits and '_', '.', ':', '=', '+', '/', '-' (PBS \
                  resource syntax)",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn allowed() -> Vec<String> {
        PBS_ALLOWED.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn strings_become_resources_in_order() {
        let got = check_resources(
            json!({"walltime": "01:00:00", "select": "1:ncpus=4:mem=2gb", "place": "scatter"}),
            &allowed(),
        )
        .unwrap();
        let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        // serde_json's map without preserve_order sorts keys; either order is fine as long as
        // every resource is there once.
        assert_eq!(got.len(), 3, "{names:?}");
        assert!(got.contains(&("select".into(), "1:ncpus=4:mem=2gb".into())));
    }

    #[test]
    fn anything_that_could_inject_is_refused_by_name() {
        let cases = [
            json!({"ncpus": 4}),
            json!({"ncpus": ["4"]}),
            json!({"ncpus": "4,prologue=/tmp/x"}),
            json!({"ncpus": "-4"}),
            json!({"ncpus": "4 -o /etc/passwd"}),
            json!({"ncpus": "4\n#PBS -o /tmp/x"}),
            json!({"ncpus": "\"4,a=b\""}),
            json!({"ncpus": ""}),
            json!({"ncpus": "4;id"}),
            json!({"ncpus": "$(id)"}),
            json!({"ncpus": "`id`"}),
            json!({"ncpus": "4|x"}),
        ];
        for case in cases {
            let err = check_resources(case.clone(), &allowed()).unwrap_err();
            let text = err.to_string();
            assert!(text.contains("pbsResources"), "{case}: {text}");
            assert!(text.contains("ncpus"), "{case}: {text}");
        }
    }

    #[test]
    fn reserved_names_lose_even_when_the_admin_allows_them() {
        let mut allowed = allowed();
        allowed.push("prologue".into());
        let err = check_resources(json!({"prologue": "/tmp/x.sh"}), &allowed).unwrap_err();
        assert!(matches!(err, ParamError::Reserved { .. }), "{err}");
        let err = check_resources(json!({"mail_list": "a@b"}), &self::allowed()).unwrap_err();
        assert!(matches!(err, ParamError::NotAllowed { .. }), "{err}");
        let err = check_resources(json!(["ncpus"]), &self::allowed()).unwrap_err();
        assert!(matches!(err, ParamError::NotAnObject { .. }), "{err}");
    }
}
