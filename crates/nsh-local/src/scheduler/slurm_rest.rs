//! Slurm through `slurmrestd`: one HTTP request per submit, poll and cancel, with a JWT.
//!
//! Slurm serves several OpenAPI versions at once and changes shapes between them
//! (design.md §6, facts/slurm-rest.md). [`SlurmRest::connect`] reads the server's OpenAPI
//! document, picks the newest version both sides know (v0.0.38 … v0.0.45) and keeps each
//! endpoint's path exactly as listed: 22.05 writes `/slurm/v0.0.38/jobs`, 24.11+ writes
//! `/slurm/v0.0.42/jobs/`. What differs for nsh:
//!
//! ```plain
//! version    script              environment    job_state         exit_code
//! v0.0.38    top-level, required {"K": "V"}     "STRING"          raw wait status (>> 8)
//! v0.0.39    top-level or job.   {"K": "V"}     "STRING"          raw wait status
//! v0.0.40+   job.script          ["K=V", …]     ["FLAG", …]       {return_code:{set,number},
//!                                                                   signal:{id:{set,number}}}
//! ```
//!
//! Responses are parsed by JSON type rather than by version, so a server that answers in
//! another version's shape is still understood. Error numbers come from `slurm_errno.h`.
//!
//! Authentication is `X-SLURM-USER-TOKEN` plus `X-SLURM-USER-NAME` (22.05 requires the
//! name), the name read from the token's `sun` claim. The token lives in a [`Token`] that
//! never prints, its header is marked sensitive, and error details quoted from the server
//! are scrubbed of it.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value};

use super::{JobId, JobSpec, JobState, JobStatus, Scheduler};

/// Oldest and newest REST API versions nsh speaks.
pub const MIN_VERSION: ApiVersion = ApiVersion(38);
pub const MAX_VERSION: ApiVersion = ApiVersion(45);

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Where slurmrestd publishes its OpenAPI document, newest form first.
const OPENAPI_DOCS: [&str; 3] = ["/openapi/v3", "/openapi", "/openapi.json"];
/// Longest non-JSON body quoted in an error.
const MAX_QUOTED: usize = 300;

/// `ESLURM_INVALID_JOB_ID`: the job never existed or was purged after `MinJobAge`.
const ESLURM_INVALID_JOB_ID: i64 = 2017;
/// `ESLURM_ALREADY_DONE`: the job is completing or completed.
const ESLURM_ALREADY_DONE: i64 = 2021;
/// `SLURM_PROTOCOL_AUTHENTICATION_ERROR`: 24.11+ answers 511 with it for a bad token.
const SLURM_PROTOCOL_AUTHENTICATION_ERROR: i64 = 1007;

/// Job state words, by what they mean to nsh. Anything else counts as pending.
const FAILED_WORDS: [&str; 9] = [
    "CANCELLED",
    "TIMEOUT",
    "NODE_FAIL",
    "PREEMPTED",
    "BOOT_FAIL",
    "DEADLINE",
    "OUT_OF_MEMORY",
    "LAUNCH_FAILED",
    "REVOKED",
];
/// Checked before the running words: `["RUNNING","CONFIGURING"]` has not started the
/// script yet (nodes still booting).
const PENDING_WORDS: [&str; 9] = [
    "PENDING",
    "CONFIGURING",
    "REQUEUED",
    "REQUEUE_HOLD",
    "REQUEUE_FED",
    "SPECIAL_EXIT",
    "SUSPENDED",
    "RESV_DEL_HOLD",
    "POWER_UP_NODE",
];
/// v0.0.38 reports a bare `COMPLETING` while the end is not final yet: keep polling.
const RUNNING_WORDS: [&str; 5] = [
    "RUNNING",
    "COMPLETING",
    "STAGE_OUT",
    "SIGNALING",
    "RESIZING",
];

/// A Slurm REST API version `v0.0.NN`, stored as `NN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ApiVersion(u8);

impl ApiVersion {
    /// Parses `v0.0.42` or `0.0.42`.
    pub fn parse(text: &str) -> Option<ApiVersion> {
        let text = text.trim();
        let minor = text
            .strip_prefix('v')
            .unwrap_or(text)
            .strip_prefix("0.0.")?;
        if minor.is_empty() || !minor.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        minor.parse().ok().map(ApiVersion)
    }

    pub fn is_supported(self) -> bool {
        (MIN_VERSION..=MAX_VERSION).contains(&self)
    }

    /// v0.0.40 moved the script into `job` and made the environment a `K=V` list.
    fn job_script_inside(self) -> bool {
        self.0 >= 40
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v0.0.{}", self.0)
    }
}

/// Why a REST call failed. Wrapped in `anyhow::Error`; callers may downcast to branch.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(
        "{endpoint} rejected the JWT while {action} (HTTP {status}: {detail}): check \
         `slurm-jwt-token` and whether it has expired (`scontrol token lifespan=SECONDS` \
         issues a new one)"
    )]
    TokenRejected {
        endpoint: String,
        action: String,
        status: StatusCode,
        detail: String,
    },
    #[error("{endpoint} answered HTTP {status} while {action}: {detail}")]
    Http {
        endpoint: String,
        action: String,
        status: StatusCode,
        detail: String,
    },
    #[error("no answer from {endpoint} while {action}: is slurmrestd running and reachable?")]
    Unreachable {
        endpoint: String,
        action: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{endpoint} gave an unexpected answer while {action}: {detail}")]
    BadAnswer {
        endpoint: String,
        action: String,
        detail: String,
    },
    #[error("{endpoint}: {detail}")]
    Version { endpoint: String, detail: String },
    #[error("`slurm-jwt-token` is unusable: {0}")]
    BadToken(&'static str),
    #[error("cannot submit job `{name}`: {detail}")]
    BadJob { name: String, detail: String },
}

impl Error {
    /// True when trying again later may work (network trouble, a busy or restarting server).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Unreachable { .. } => true,
            Error::Http { status, .. } => {
                status.is_server_error() || *status == StatusCode::TOO_MANY_REQUESTS
            }
            _ => false,
        }
    }
}

/// The JWT. Never printed: `Debug` shows `[redacted]`.
#[derive(Clone)]
struct Token(String);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Token {
    /// Accepts the token alone or the `SLURM_JWT=…` line `scontrol token` prints.
    fn parse(text: &str) -> Result<Token, Error> {
        let text = text.trim();
        let text = text.strip_prefix("SLURM_JWT=").unwrap_or(text);
        if text.is_empty() {
            return Err(Error::BadToken("it is empty"));
        }
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::BadToken(
                "it contains spaces or non-ASCII characters",
            ));
        }
        Ok(Token(text.to_owned()))
    }

    /// The `sun` (Slurm user name) claim of the payload. The signature is slurmctld's
    /// business; this only finds the name 22.05 wants in `X-SLURM-USER-NAME`.
    fn user(&self) -> Result<Option<String>, Error> {
        let mut parts = self.0.split('.');
        let (Some(_header), Some(payload), Some(_signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Error::BadToken(
                "it is not a JWT (three base64url parts joined by `.`)",
            ));
        };
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .map_err(|_| Error::BadToken("its payload is not base64url"))?;
        let claims: Value = serde_json::from_slice(&bytes)
            .map_err(|_| Error::BadToken("its payload is not JSON"))?;
        if !claims.is_object() {
            return Err(Error::BadToken("its payload is not a JSON object"));
        }
        Ok(claims
            .get("sun")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned))
    }

    /// Replaces the token wherever a server echoed it back.
    fn scrub(&self, text: String) -> String {
        if text.contains(&self.0) {
            text.replace(&self.0, "[redacted]")
        } else {
            text
        }
    }
}

/// The endpoints nsh uses, as the OpenAPI document spells them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Paths {
    submit: String,
    /// `job/{job_id}` split around the parameter.
    job: (String, String),
    jobs: String,
    /// `jobs/state/` (v0.0.41+): a cheap authenticated request for [`SlurmRest::ping`].
    jobs_state: Option<String>,
}

impl Paths {
    /// Finds the endpoints of `version` among the document's paths; `None` without a
    /// job submit path.
    fn find<'a>(version: ApiVersion, listed: impl IntoIterator<Item = &'a str>) -> Option<Paths> {
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

    fn job(&self, id: &str) -> String {
        format!("{}{id}{}", self.job.0, self.job.1)
    }
}

/// Versions whose paths the OpenAPI document lists, each with its endpoints when it has a
/// submit path.
fn served_versions(doc: &Value) -> BTreeMap<ApiVersion, Option<Paths>> {
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
fn choose_version(
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

/// The `/job/submit` body for `version`, with `job.extra` merged last into `job`.
fn submit_body(version: ApiVersion, spec: &JobSpec) -> Result<Value, String> {
    for (name, _) in &spec.environment {
        if name.is_empty() || name.contains(['=', '\0']) {
            return Err(format!(
                "environment variable name `{name}` is empty or has `=`/NUL"
            ));
        }
    }
    let mut job = Map::new();
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
    for (key, value) in &spec.extra {
        job.insert(key.clone(), value.clone());
    }
    body.insert("job".into(), Value::Object(job));
    Ok(Value::Object(body))
}

/// `job_id` of a submit answer: a number (or, defensively, a numeric string).
fn submitted_job_id(answer: &Value) -> Option<JobId> {
    match answer.get("job_id")? {
        Value::Number(n) => n.as_u64().map(|n| JobId(n.to_string())),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            Some(JobId(s.clone()))
        }
        _ => None,
    }
}

/// A number that is either plain or wrapped as `{set, infinite, number}`.
fn maybe_number(value: Option<&Value>) -> Option<i64> {
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
fn exit_of(value: Option<&Value>) -> (Option<i32>, Option<i32>) {
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

fn classify(words: &[String], exit_code: Option<i32>) -> JobState {
    let has = |word: &str| words.iter().any(|w| w == word);
    if FAILED_WORDS.iter().any(|w| has(w)) {
        JobState::Failed
    } else if has("COMPLETED") {
        JobState::Finished
    } else if has("FAILED") {
        // The script ran and exited non-zero; FAILED without one is Slurm failing the job.
        if exit_code.is_some_and(|c| c != 0) {
            JobState::Finished
        } else {
            JobState::Failed
        }
    } else if PENDING_WORDS.iter().any(|w| has(w)) {
        JobState::Pending
    } else if RUNNING_WORDS.iter().any(|w| has(w)) {
        JobState::Running
    } else {
        JobState::Pending
    }
}

/// Maps one job record of `GET job/{id}` to a [`JobStatus`].
fn job_status(job: &Value) -> Result<JobStatus, String> {
    let words = state_words(job.get("job_state"));
    if words.is_empty() {
        return Err("the job record has no job_state".to_owned());
    }
    let (exit_code, signal) = exit_of(job.get("exit_code"));
    let state = classify(&words, exit_code);
    let (exit_code, signal) = match state {
        JobState::Finished => (exit_code.or(Some(0)).filter(|_| signal.is_none()), signal),
        JobState::Failed => (exit_code, signal),
        _ => (None, None),
    };
    let text = |key: &str| job.get(key).and_then(Value::as_str).map(str::trim);
    let host = text("batch_host")
        .filter(|h| !h.is_empty() && *h != "(null)")
        .or_else(|| text("nodes").filter(|n| !n.is_empty() && !n.contains(['[', ',', '('])))
        .map(str::to_owned);
    let reason = text("state_reason")
        .filter(|r| !r.is_empty() && *r != "None")
        .map(str::to_owned);
    Ok(JobStatus {
        state,
        raw_state: words.join(","),
        host,
        exit_code,
        signal,
        reason,
    })
}

fn unknown_status() -> JobStatus {
    JobStatus {
        state: JobState::Unknown,
        raw_state: String::new(),
        host: None,
        exit_code: None,
        signal: None,
        reason: None,
    }
}

/// The record of job `id` in a `GET job/{id}` answer; `None` if the answer lists no job.
fn find_job<'a>(answer: &'a Value, id: &JobId) -> Option<&'a Value> {
    let jobs = answer.get("jobs")?.as_array()?;
    let same = |job: &&Value| match job.get("job_id") {
        Some(Value::Number(n)) => n.to_string() == id.0,
        Some(Value::String(s)) => *s == id.0,
        _ => false,
    };
    jobs.iter().find(same).or_else(|| jobs.first())
}

/// Error numbers in `errors[].error_number` and `status[].error.code` (v0.0.42+ kill).
fn error_numbers(answer: Option<&Value>) -> Vec<i64> {
    let Some(answer) = answer else {
        return Vec::new();
    };
    let items = |key: &str| {
        answer
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
    };
    let errors = items("errors").filter_map(|e| e.get("error_number").and_then(Value::as_i64));
    let status = items("status").filter_map(|s| {
        s.get("error")
            .and_then(|e| e.get("code"))
            .and_then(Value::as_i64)
    });
    errors.chain(status).filter(|&n| n != 0).collect()
}

/// What the server said went wrong, for an error message.
fn error_detail(text: &str, answer: Option<&Value>) -> String {
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
    let items = |key: &str| {
        answer
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
    };
    let mut parts = Vec::new();
    for item in items("errors") {
        let error = str_of(item, "error");
        let description = str_of(item, "description").filter(|d| Some(*d) != error);
        let mut part = [error, description]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(": ");
        if let Some(n) = item.get("error_number").and_then(Value::as_i64) {
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
fn is_auth_failure(status: StatusCode, text: &str, answer: Option<&Value>) -> bool {
    status == StatusCode::UNAUTHORIZED
        || status == StatusCode::NETWORK_AUTHENTICATION_REQUIRED
        || (answer.is_none() && text.contains("Authentication failure"))
        || error_numbers(answer).contains(&SLURM_PROTOCOL_AUTHENTICATION_ERROR)
}

/// An HTTP answer, with its body parsed as JSON when it is JSON.
struct Answer {
    status: StatusCode,
    text: String,
    json: Option<Value>,
}

/// The Slurm REST backend. Connect with [`SlurmRest::connect`].
pub struct SlurmRest {
    client: reqwest::Client,
    base_url: String,
    version: ApiVersion,
    paths: Paths,
    user: Option<String>,
    token: Token,
    auth: HeaderMap,
}

impl fmt::Debug for SlurmRest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlurmRest")
            .field("base_url", &self.base_url)
            .field("version", &self.version)
            .field("paths", &self.paths)
            .field("user", &self.user)
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

impl SlurmRest {
    /// Connects to slurmrestd at `host:port` and negotiates the API version: the newest one
    /// both sides speak, or `forced_version` (`v0.0.42`) if the server serves it.
    pub async fn connect(
        host: &str,
        port: u16,
        token: &str,
        forced_version: Option<&str>,
    ) -> anyhow::Result<SlurmRest> {
        let token = Token::parse(token)?;
        let user = token.user()?;
        let mut auth = HeaderMap::new();
        let mut secret = HeaderValue::from_str(&token.0)
            .map_err(|_| Error::BadToken("it is not a valid HTTP header value"))?;
        secret.set_sensitive(true);
        auth.insert(HeaderName::from_static("x-slurm-user-token"), secret);
        if let Some(user) = &user {
            let name = HeaderValue::from_str(user)
                .map_err(|_| Error::BadToken("its `sun` claim is not a valid HTTP header value"))?;
            auth.insert(HeaderName::from_static("x-slurm-user-name"), name);
        }
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .no_proxy()
            .build()
            .map_err(|e| anyhow::anyhow!("cannot set up the HTTP client: {e}"))?;
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        let mut rest = SlurmRest {
            client,
            base_url: format!("http://{host}:{port}"),
            version: ApiVersion(0),
            paths: Paths {
                submit: String::new(),
                job: (String::new(), String::new()),
                jobs: String::new(),
                jobs_state: None,
            },
            user,
            token,
            auth,
        };
        let doc = rest.openapi_document().await?;
        let served = served_versions(&doc);
        let (version, paths) =
            choose_version(&served, forced_version).map_err(|detail| Error::Version {
                endpoint: rest.describe(),
                detail,
            })?;
        rest.version = version;
        rest.paths = paths;
        tracing::debug!(endpoint = %rest.describe(), user = ?rest.user, "negotiated Slurm REST API");
        Ok(rest)
    }

    /// The negotiated API version.
    pub fn version(&self) -> ApiVersion {
        self.version
    }

    /// The user name sent in `X-SLURM-USER-NAME` (the token's `sun` claim).
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// Checks that slurmrestd accepts the token and reaches slurmctld, with an
    /// authenticated job listing (`ping` answers 200 even for a bad token on v0.0.42+).
    pub async fn ping(&self) -> anyhow::Result<()> {
        let action = "checking the token with a job listing";
        let path = self.paths.jobs_state.as_deref().unwrap_or(&self.paths.jobs);
        let answer = self.request(Method::GET, path, None, action).await?;
        if answer.status.is_success() && answer.json.is_some() {
            return Ok(());
        }
        let mut error = self.error(&answer, action);
        // 22.05 answers a bad token with a 500 and a misleading message.
        if let Error::Http { detail, .. } = &mut error
            && !self.version.job_script_inside()
            && answer.status == StatusCode::INTERNAL_SERVER_ERROR
        {
            detail.push_str(
                " (Slurm 22.05–23.11 answers a rejected JWT this way too: check \
                 `slurm-jwt-token` and whether it has expired)",
            );
        }
        Err(error.into())
    }

    async fn openapi_document(&self) -> Result<Value, Error> {
        let action = "reading the OpenAPI document";
        let mut last = None;
        for path in OPENAPI_DOCS {
            let answer = self.request(Method::GET, path, None, action).await?;
            match answer.json {
                Some(doc) if answer.status.is_success() && doc.get("paths").is_some() => {
                    return Ok(doc);
                }
                _ if is_auth_failure(answer.status, &answer.text, answer.json.as_ref()) => {
                    return Err(self.error(&answer, action));
                }
                _ => last = Some(answer),
            }
        }
        Err(match last {
            Some(answer) if !answer.status.is_success() => self.error(&answer, action),
            _ => self.bad_answer(
                action,
                "none of /openapi/v3, /openapi, /openapi.json is an OpenAPI document",
            ),
        })
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        action: &str,
    ) -> Result<Answer, Error> {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base_url));
        request = request.headers(self.auth.clone());
        if let Some(body) = body {
            request = request.json(body);
        }
        let unreachable = |source| Error::Unreachable {
            endpoint: self.describe(),
            action: action.to_owned(),
            source,
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let text = response.text().await.map_err(unreachable)?;
        let json = serde_json::from_str(&text).ok();
        Ok(Answer { status, text, json })
    }

    /// The error for an unsuccessful answer.
    fn error(&self, answer: &Answer, action: &str) -> Error {
        let detail = self
            .token
            .scrub(error_detail(&answer.text, answer.json.as_ref()));
        let (endpoint, action, status) = (self.describe(), action.to_owned(), answer.status);
        if is_auth_failure(answer.status, &answer.text, answer.json.as_ref()) {
            Error::TokenRejected {
                endpoint,
                action,
                status,
                detail,
            }
        } else {
            Error::Http {
                endpoint,
                action,
                status,
                detail,
            }
        }
    }

    fn bad_answer(&self, action: &str, detail: impl Into<String>) -> Error {
        Error::BadAnswer {
            endpoint: self.describe(),
            action: action.to_owned(),
            detail: self.token.scrub(detail.into()),
        }
    }

    /// Job ids go into URL paths: refuse anything that would need escaping.
    fn checked_id<'a>(&self, id: &'a JobId, action: &str) -> Result<&'a str, Error> {
        let ok = !id.0.is_empty()
            && id
                .0
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_+.-".contains(&b));
        if ok {
            Ok(&id.0)
        } else {
            Err(self.bad_answer(action, format!("invalid job id `{id}`")))
        }
    }
}

impl Scheduler for SlurmRest {
    async fn submit(&self, job: &JobSpec) -> anyhow::Result<JobId> {
        let action = format!("submitting job `{}`", job.name);
        let body = submit_body(self.version, job).map_err(|detail| Error::BadJob {
            name: job.name.clone(),
            detail,
        })?;
        let answer = self
            .request(Method::POST, &self.paths.submit, Some(&body), &action)
            .await?;
        if !answer.status.is_success() {
            return Err(self.error(&answer, &action).into());
        }
        let Some(json) = &answer.json else {
            return Err(self.bad_answer(&action, "the answer is not JSON").into());
        };
        match submitted_job_id(json) {
            Some(id) => {
                tracing::debug!(job_id = %id, endpoint = %self.describe(), "submitted");
                Ok(id)
            }
            None => {
                let detail = error_detail(&answer.text, Some(json));
                Err(self
                    .bad_answer(&action, format!("no job_id in the answer ({detail})"))
                    .into())
            }
        }
    }

    async fn status(&self, id: &JobId) -> anyhow::Result<JobStatus> {
        let action = format!("querying job {id}");
        let path = self.paths.job(self.checked_id(id, &action)?);
        let answer = self.request(Method::GET, &path, None, &action).await?;
        let unknown = answer.status == StatusCode::NOT_FOUND
            || error_numbers(answer.json.as_ref()).contains(&ESLURM_INVALID_JOB_ID);
        if unknown && !is_auth_failure(answer.status, &answer.text, answer.json.as_ref()) {
            return Ok(unknown_status());
        }
        if !answer.status.is_success() {
            return Err(self.error(&answer, &action).into());
        }
        let Some(json) = &answer.json else {
            return Err(self.bad_answer(&action, "the answer is not JSON").into());
        };
        match find_job(json, id) {
            Some(job) => job_status(job).map_err(|detail| self.bad_answer(&action, detail).into()),
            None => Ok(unknown_status()),
        }
    }

    async fn cancel(&self, id: &JobId) -> anyhow::Result<()> {
        let action = format!("cancelling job {id}");
        let path = self.paths.job(self.checked_id(id, &action)?);
        let answer = self.request(Method::DELETE, &path, None, &action).await?;
        let numbers = error_numbers(answer.json.as_ref());
        let gone = |n: &i64| *n == ESLURM_INVALID_JOB_ID || *n == ESLURM_ALREADY_DONE;
        let done = if answer.status.is_success() {
            numbers.iter().all(gone)
        } else {
            // 22.05 answers 500 + 2017 for a job it no longer knows.
            !numbers.is_empty() && numbers.iter().all(gone) && answer.status.is_server_error()
        };
        if done {
            return Ok(());
        }
        if answer.status.is_success() {
            let detail = error_detail(&answer.text, answer.json.as_ref());
            return Err(self.bad_answer(&action, detail).into());
        }
        Err(self.error(&answer, &action).into())
    }

    fn describe(&self) -> String {
        if self.version.is_supported() {
            format!("slurmrestd at {} ({})", self.base_url, self.version)
        } else {
            format!("slurmrestd at {}", self.base_url)
        }
    }
}

#[cfg(test)]
mod testbed_tests;
#[cfg(test)]
mod tests;
