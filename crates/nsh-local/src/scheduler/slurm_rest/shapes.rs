//! The JSON of each Slurm REST API version, as pure functions: which paths a version
//! serves, the submit body, and what job records, error lists and kill answers mean.
//! Kept apart from the HTTP client so every shape can be tested against captured samples.

use std::collections::BTreeMap;

use reqwest::StatusCode;
use serde_json::{Map, Value};

use super::{ApiVersion, MAX_VERSION, MIN_VERSION};
use crate::scheduler::slurm_state::{self, Facts};
use crate::scheduler::{JobId, JobParams, JobSpec, JobStatus};

/// Longest non-JSON body quoted in an error.
pub(super) const MAX_QUOTED: usize = 300;

/// `ESLURM_INVALID_JOB_ID`: the job never existed or was purged after `MinJobAge`.
pub(super) const ESLURM_INVALID_JOB_ID: i64 = 2017;
/// `ESLURM_ALREADY_DONE`: the job is completing or completed.
pub(super) const ESLURM_ALREADY_DONE: i64 = 2021;
/// Submissions refused for a limit that frees up as jobs end (slurm_errno.h):
/// `ESLURM_ACCOUNTING_POLICY` (2050: "Job violates accounting/QOS policy (job submit limit,
/// user's size and/or time limits)", what `MaxSubmitJobs`/`MaxSubmitJobsPerUser` and the
/// QOS and association limits give under `AccountingStorageEnforce=limits`),
/// `ESLURM_ERROR_ON_DESC_TO_RECORD_COPY` (2007: "Unable to create job record, try again",
/// MaxJobCount reached) and `EAGAIN` (11: "Resource temporarily unavailable"). sbatch
/// sleeps and retries on the last two.
pub(super) const LIMIT_ERRORS: [i64; 3] = [2050, 2007, 11];
/// `SLURM_PROTOCOL_AUTHENTICATION_ERROR`: 24.11+ answers 511 with it for a bad token.
pub(super) const SLURM_PROTOCOL_AUTHENTICATION_ERROR: i64 = 1007;
/// What 22.05 (v0.0.38) answers, with HTTP 500, when slurmctld rejects the token: -1
/// (`Unspecified error`) for job queries, 5005 (`Zero Bytes were transmitted or received`)
/// for submit and cancel.
pub(super) const V0_0_38_AUTH_ERRORS: [i64; 2] = [-1, 5005];

/// The endpoints nsh uses, as the OpenAPI document spells them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct Paths {
    pub(super) submit: String,
    /// `job/{job_id}` split around the parameter.
    pub(super) job: (String, String),
    pub(super) jobs: String,
    /// `jobs/state/` (v0.0.41+): a cheap authenticated request for [`SlurmRest::ping`].
    pub(super) jobs_state: Option<String>,
}

impl Paths {
    /// Finds the endpoints of `version` among the document's paths; `None` without a
    /// job submit path.
    pub(super) fn find<'a>(
        version: ApiVersion,
        listed: impl IntoIterator<Item = &'a str>,
    ) -> Option<Paths> {
        let prefix = format!("/slurm/{version}/");
        let mut submit = None;
        let mut job = None;
        let mut jobs = None;
        let mut jobs_state = None;
        for path in listed {
            let Some(rest) = path.strip_prefix(&prefix) else {
                continue;
            };
            match rest.trim_end_matches('/') {
                "job/submit" => submit = Some(path.to_owned()),
                "jobs" => jobs = Some(path.to_owned()),
                "jobs/state" => jobs_state = Some(path.to_owned()),
                other => {
                    let is_job = other
                        .strip_prefix("job/{")
                        .and_then(|p| p.strip_suffix('}'))
                        .is_some_and(|param| !param.contains(['/', '{', '}']));
                    if is_job
                        && let Some((before, after)) = path.split_once('{')
                        && let Some((_, after)) = after.split_once('}')
                    {
                        job = Some((before.to_owned(), after.to_owned()));
                    }
                }
            }
        }
        let submit = submit?;
        // Listed by every version seen so far; the fallbacks only guard odd documents.
        let slash = if version.job_script_inside() { "/" } else { "" };
        Some(Paths {
            job: job.unwrap_or_else(|| (format!("{prefix}job/"), String::new())),
            jobs: jobs.unwrap_or_else(|| format!("{prefix}jobs{slash}")),
            submit,
            jobs_state,
        })
    }

    pub(super) fn job(&self, id: &str) -> String {
        format!("{}{id}{}", self.job.0, self.job.1)
    }
}

/// Versions whose paths the OpenAPI document lists, each with its endpoints when it has a
/// submit path.
pub(super) fn served_versions(doc: &Value) -> BTreeMap<ApiVersion, Option<Paths>> {
    let Some(paths) = doc.get("paths").and_then(Value::as_object) else {
        return BTreeMap::new();
    };
    let mut by_version: BTreeMap<ApiVersion, Vec<&str>> = BTreeMap::new();
    for path in paths.keys() {
        let version = path
            .strip_prefix("/slurm/")
            .and_then(|rest| rest.split_once('/'))
            .and_then(|(version, _)| ApiVersion::parse(version));
        if let Some(version) = version {
            by_version.entry(version).or_default().push(path);
        }
    }
    by_version
        .into_iter()
        .map(|(version, listed)| (version, Paths::find(version, listed)))
        .collect()
}

/// Picks the forced version if it is served, else the newest served version nsh speaks.
pub(super) fn choose_version(
    served: &BTreeMap<ApiVersion, Option<Paths>>,
    forced: Option<&str>,
) -> Result<(ApiVersion, Paths), String> {
    let usable = |v: &ApiVersion| served.get(v).is_some_and(Option::is_some);
    let listing = || {
        if served.is_empty() {
            "no /slurm/ paths".to_owned()
        } else {
            served
                .keys()
                .map(ApiVersion::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    let version = match forced {
        Some(text) => {
            let version = ApiVersion::parse(text)
                .ok_or_else(|| format!("slurm-api-version `{text}` is not of the form v0.0.NN"))?;
            if !version.is_supported() {
                return Err(format!(
                    "slurm-api-version {version} is not one nsh speaks ({MIN_VERSION} to \
                     {MAX_VERSION})"
                ));
            }
            if !usable(&version) {
                return Err(format!(
                    "slurm-api-version {version} is not served with a job submit path (the \
                     OpenAPI document lists {}); unset it to negotiate",
                    listing()
                ));
            }
            version
        }
        None => served
            .keys()
            .copied()
            .filter(|v| v.is_supported() && usable(v))
            .max()
            .ok_or_else(|| {
                format!(
                    "no REST API version in common: the OpenAPI document lists {}, nsh speaks \
                     {MIN_VERSION} to {MAX_VERSION}; load `openapi/slurmctld` (Slurm 23.11+) \
                     or `openapi/v0.0.38` (22.05) with slurmrestd's -s option",
                    listing()
                )
            })?,
    };
    match served.get(&version) {
        Some(Some(paths)) => Ok((version, paths.clone())),
        _ => Err(format!("{version} has no job submit path")),
    }
}

/// The `/job/submit` body for `version`: the job's parameters with nsh's own fields over it.
pub(super) fn submit_body(version: ApiVersion, spec: &JobSpec) -> Result<Value, String> {
    for (name, _) in &spec.environment {
        if name.is_empty() || name.contains(['=', '\0']) {
            return Err(format!(
                "environment variable name `{name}` is empty or has `=`/NUL"
            ));
        }
    }
    // The extra parameters first: nsh's own fields below always win over them (the
    // derivation's are checked in `scheduler::job_params`; the admin's may not name these).
    let mut job: Map<String, Value> = match &spec.params {
        JobParams::SlurmRest(params) => params.clone(),
        other => return Err(format!("parameters for another scheduler: {other:?}")),
    };
    // 22.05's v0.0.38 parser refuses the key ("Disabled key: excluded_nodes"): there a
    // resubmission may land on the lost node again.
    if !spec.exclude_hosts.is_empty() && version != ApiVersion(38) {
        let nodes = excluded_nodes(job.get("excluded_nodes"), &spec.exclude_hosts);
        job.insert("excluded_nodes".into(), nodes);
    }
    job.insert("name".into(), spec.name.clone().into());
    job.insert(
        "current_working_directory".into(),
        spec.working_dir.clone().into(),
    );
    // The job script redirects its own output; Slurm's files would only pile up.
    job.insert("standard_output".into(), "/dev/null".into());
    job.insert("standard_error".into(), "/dev/null".into());
    // nsh owns retries: a requeued job would start the agent a second time. v0.0.38 reads
    // any `requeue` as `--requeue` (seen on 22.05); it needs `--no-requeue`'s name.
    if version == ApiVersion(38) {
        job.insert("no_requeue".into(), true.into());
    } else {
        job.insert("requeue".into(), false.into());
    }
    let mut body = Map::new();
    if version.job_script_inside() {
        let env = spec
            .environment
            .iter()
            .map(|(k, v)| Value::from(format!("{k}={v}")));
        job.insert("environment".into(), Value::Array(env.collect()));
        job.insert("script".into(), spec.script.clone().into());
    } else {
        // v0.0.38 takes only an object and only a top-level script; v0.0.39 takes both.
        let env = spec
            .environment
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.clone())));
        job.insert("environment".into(), Value::Object(env.collect()));
        body.insert("script".into(), spec.script.clone().into());
    }
    body.insert("job".into(), Value::Object(job));
    Ok(Value::Object(body))
}

/// `job_id` of a submit answer: a number (or, defensively, a numeric string).
pub(super) fn submitted_job_id(answer: &Value) -> Option<JobId> {
    match answer.get("job_id")? {
        Value::Number(n) => n.as_u64().map(|n| JobId(n.to_string())),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            Some(JobId(s.clone()))
        }
        _ => None,
    }
}

/// A number that is either plain or wrapped as `{set, infinite, number}`.
pub(super) fn maybe_number(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::Number(n) => n.as_i64(),
        Value::Object(o) => {
            let set = o.get("set").and_then(Value::as_bool).unwrap_or(false);
            let infinite = o.get("infinite").and_then(Value::as_bool).unwrap_or(false);
            if set && !infinite {
                o.get("number").and_then(Value::as_i64)
            } else {
                None
            }
        }
        _ => None,
    }
}

/// `(exit code, signal)` of a job record's `exit_code`.
pub(super) fn exit_of(value: Option<&Value>) -> (Option<i32>, Option<i32>) {
    let to_i32 = |n: i64| i32::try_from(n).ok();
    match value {
        // v0.0.38/39: the raw wait status.
        Some(Value::Number(n)) => match n.as_i64() {
            Some(raw) if raw >= 0 => {
                let signal = raw & 0x7f;
                if signal != 0 {
                    (None, to_i32(signal))
                } else {
                    (to_i32((raw >> 8) & 0xff), None)
                }
            }
            _ => (None, None),
        },
        Some(Value::Object(o)) => {
            let code = maybe_number(o.get("return_code")).and_then(to_i32);
            let signal = o
                .get("signal")
                .and_then(|s| maybe_number(s.get("id")))
                .filter(|&s| s != 0)
                .and_then(to_i32);
            (code, signal)
        }
        _ => (None, None),
    }
}

/// The state words of `job_state`: a string (v0.0.38/39) or an array of flags (v0.0.40+).
fn state_words(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(s)) => s
            .split([',', ' '])
            .filter(|w| !w.is_empty())
            .map(str::to_ascii_uppercase)
            .collect(),
        Some(Value::Array(words)) => words
            .iter()
            .filter_map(Value::as_str)
            .filter(|w| !w.is_empty())
            .map(str::to_ascii_uppercase)
            .collect(),
        _ => Vec::new(),
    }
}

/// Maps one job record of `GET job/{id}` to a [`JobStatus`].
pub(super) fn job_status(job: &Value) -> Result<JobStatus, String> {
    let words = state_words(job.get("job_state"));
    if words.is_empty() {
        return Err("the job record has no job_state".to_owned());
    }
    let (exit_code, signal) = exit_of(job.get("exit_code"));
    let text = |key: &str| job.get(key).and_then(Value::as_str);
    Ok(slurm_state::job_status(&Facts {
        words: &words,
        exit_code,
        signal,
        batch_host: text("batch_host"),
        nodes: text("nodes"),
        reason: text("state_reason"),
    }))
}

/// `excluded_nodes` of the request: whatever the derivation or the admin excluded (a
/// comma-separated string, or a list on v0.0.40+) plus `hosts`, as one comma-separated
/// string, which every version reads.
fn excluded_nodes(given: Option<&Value>, hosts: &[String]) -> Value {
    let mut all: Vec<String> = match given {
        Some(Value::String(s)) => s.split(',').map(|n| n.trim().to_owned()).collect(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(|n| n.trim().to_owned())
            .collect(),
        _ => Vec::new(),
    };
    all.retain(|n| !n.is_empty());
    for h in hosts {
        if !all.contains(h) {
            all.push(h.clone());
        }
    }
    Value::from(all.join(","))
}

/// The record of job `id` in a `GET job/{id}` answer; `None` if the answer lists no job.
pub(super) fn find_job<'a>(answer: &'a Value, id: &JobId) -> Option<&'a Value> {
    let jobs = answer.get("jobs")?.as_array()?;
    let same = |job: &&Value| match job.get("job_id") {
        Some(Value::Number(n)) => n.to_string() == id.0,
        Some(Value::String(s)) => *s == id.0,
        _ => false,
    };
    jobs.iter().find(same).or_else(|| jobs.first())
}

/// `error_number`, or `error_code` as 22.05's submit answers say.
fn error_number(item: &Value) -> Option<i64> {
    item.get("error_number")
        .or_else(|| item.get("error_code"))
        .and_then(Value::as_i64)
}

/// The elements of the array `answer[key]`; none if it is absent or not an array.
fn array_items<'a>(answer: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> + use<'a> {
    answer
        .get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// Error numbers in `errors[]` and `status[].error.code` (v0.0.42+ kill).
pub(super) fn error_numbers(answer: Option<&Value>) -> Vec<i64> {
    let Some(answer) = answer else {
        return Vec::new();
    };
    let items = |key: &str| array_items(answer, key);
    let errors = items("errors").filter_map(error_number);
    let status = items("status").filter_map(|s| {
        s.get("error")
            .and_then(|e| e.get("code"))
            .and_then(Value::as_i64)
    });
    errors.chain(status).filter(|&n| n != 0).collect()
}

/// What the server said went wrong, for an error message.
pub(super) fn error_detail(text: &str, answer: Option<&Value>) -> String {
    let Some(answer) = answer else {
        let text = text.trim();
        if text.is_empty() {
            return "empty body".to_owned();
        }
        return match text.char_indices().nth(MAX_QUOTED) {
            Some((cut, _)) => format!("{}…", &text[..cut]),
            None => text.to_owned(),
        };
    };
    let items = |key: &str| array_items(answer, key);
    let mut parts = Vec::new();
    for item in items("errors") {
        let error = str_of(item, "error");
        let description = str_of(item, "description").filter(|d| Some(*d) != error);
        let mut part = [error, description]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(": ");
        if let Some(n) = error_number(item) {
            part = if part.is_empty() {
                format!("error {n}")
            } else {
                format!("{part} (error {n})")
            };
        }
        if !part.is_empty() {
            parts.push(part);
        }
    }
    for item in items("status") {
        if let Some(error) = item.get("error")
            && let Some(code) = error.get("code").and_then(Value::as_i64)
            && code != 0
        {
            let what = str_of(error, "string").unwrap_or("error");
            parts.push(format!("{what} (error {code})"));
        }
    }
    if parts.is_empty() {
        "no error details in the answer".to_owned()
    } else {
        parts.join("; ")
    }
}

/// A non-empty string field.
fn str_of<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value
        .get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// `Authentication failure` (plain text, any version) or 511/1007 (24.11+).
pub(super) fn is_auth_failure(status: StatusCode, text: &str, answer: Option<&Value>) -> bool {
    status == StatusCode::UNAUTHORIZED
        || status == StatusCode::NETWORK_AUTHENTICATION_REQUIRED
        || (answer.is_none() && text.contains("Authentication failure"))
        || error_numbers(answer).contains(&SLURM_PROTOCOL_AUTHENTICATION_ERROR)
}
