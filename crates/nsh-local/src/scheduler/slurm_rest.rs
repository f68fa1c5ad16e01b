//! Slurm through `slurmrestd`: one HTTP request per submit, poll and cancel, with a JWT.
//!
//! Slurm serves several OpenAPI versions at once and changes shapes between them
//! (the table below). [`SlurmRest::connect`] reads the server's OpenAPI
//! document, picks the newest version both sides know (v0.0.38 … v0.0.45) and keeps each
//! endpoint's path exactly as listed: 22.05 writes `/slurm/v0.0.38/jobs`, 24.11+ writes
//! `/slurm/v0.0.42/jobs/`. What differs for nsh:
//!
//! ```plain
//! version    script              environment    job_state         exit_code
//! v0.0.38    top-level, required {"K": "V"}     "STRING"          raw wait status (>> 8)
//! v0.0.39    top-level (or job)  {"K": "V"}     "STRING"          raw wait status
//! v0.0.40+   job.script          ["K=V", …]     ["FLAG", …]       {return_code:{set,number},
//!                                                                   signal:{id:{set,number}}}
//! ```
//!
//! nsh sends the v0.0.38 shape to v0.0.39 too (both forms are accepted there). Jobs are
//! submitted non-requeueable: `requeue: false`, except on v0.0.38, which reads any
//! `requeue` as `--requeue` (seen on 22.05) and needs `no_requeue: true`.
//!
//! Responses are parsed by JSON type rather than by version, so a server that answers in
//! another version's shape is still understood (see [`shapes`]).
//!
//! Authentication is `X-SLURM-USER-TOKEN` plus `X-SLURM-USER-NAME` (22.05 requires the
//! name), the name read from the token's `sun` claim. The token lives in a [`Token`] that
//! never prints, its header is marked sensitive, and error details quoted from the server
//! are scrubbed of it.
//!
//! Transport is plain HTTP (as the reference tool) or HTTPS with certificate and host-name
//! verification (an nsh extension; [`Transport`]). A TLS failure is its own error
//! ([`Error::Tls`]), told apart from "unreachable" by the rustls error in reqwest's source
//! chain; an HTTPS client never makes a plain-HTTP request and no client follows redirects,
//! so the token only ever goes where `nsh.conf` says, the way it says.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::{ErrorKind, JobId, JobSpec, JobStatus, SLURM_CPU_VARS, Scheduler};
#[cfg(test)]
use credentials::Token;
pub use credentials::TokenSource;
use credentials::{Credentials, Renewal, Renewed};
pub use errors::Error;
use permits::Permits;
use shapes::{
    ESLURM_ALREADY_DONE, ESLURM_INVALID_JOB_ID, LIMIT_ERRORS, Paths, V0_0_38_AUTH_ERRORS,
    choose_version, error_detail, error_numbers, find_job, is_auth_failure, job_status,
    served_versions, submit_body, submitted_job_id,
};
pub use transport::Transport;
use transport::{REQUEST_TIMEOUT, http_client, rustls_error, tls_problem};

/// Oldest and newest REST API versions nsh speaks.
pub const MIN_VERSION: ApiVersion = ApiVersion(38);
pub const MAX_VERSION: ApiVersion = ApiVersion(45);

/// Where slurmrestd publishes its OpenAPI document, newest form first.
const OPENAPI_DOCS: [&str; 3] = ["/openapi/v3", "/openapi", "/openapi.json"];

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

/// An HTTP answer, with its body parsed as JSON when it is JSON.
struct Answer {
    status: StatusCode,
    text: String,
    json: Option<Value>,
}

/// The Slurm REST backend. Connect with [`SlurmRest::connect`].
pub struct SlurmRest {
    client: reqwest::Client,
    transport: Transport,
    /// `slurm-api-host` as configured, for messages.
    host: String,
    base_url: String,
    version: ApiVersion,
    paths: Paths,
    /// The user of the token nsh started with, for messages.
    user: Option<String>,
    /// The token in use; replaced when a renewal finds a new one.
    creds: std::sync::RwLock<Arc<Credentials>>,
    renewal: Renewal,
    /// Set when a renewal replaced the token; [`SlurmRest::take_renewal`] clears it.
    renewed: AtomicBool,
    permits: Permits,
}

impl fmt::Debug for SlurmRest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlurmRest")
            .field("base_url", &self.base_url)
            .field("version", &self.version)
            .field("paths", &self.paths)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

const NEGOTIATION_TTL: Duration = Duration::from_secs(600);

fn read_cached_negotiation(path: &std::path::Path) -> Option<(ApiVersion, Paths)> {
    let meta = std::fs::metadata(path).ok()?;
    if meta.modified().ok()?.elapsed().ok()? > NEGOTIATION_TTL {
        return None;
    }
    let (v, paths): (u8, Paths) = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    let version = ApiVersion(v);
    version.is_supported().then_some((version, paths))
}

fn write_cached_negotiation(path: &std::path::Path, version: ApiVersion, paths: &Paths) {
    // Best effort: temp file + rename so concurrent hooks never read half a file.
    let Ok(bytes) = serde_json::to_vec(&(version.0, paths)) else {
        return;
    };
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    if std::fs::write(&tmp, bytes).is_ok() {
        let _ = std::fs::rename(&tmp, path);
    }
}

impl SlurmRest {
    /// Connects to slurmrestd at `http://host:port` and negotiates the API version: the
    /// newest one both sides speak, or `forced_version` (`v0.0.42`) if the server serves it.
    #[cfg(test)]
    pub async fn connect(
        host: &str,
        port: u16,
        token: &str,
        forced_version: Option<&str>,
    ) -> anyhow::Result<SlurmRest> {
        Self::connect_cached(host, port, &Transport::Http, token, forced_version, None).await
    }

    /// Like [`connect`](Self::connect), but reuses a negotiation recorded in `cache_dir`
    /// within the last ten minutes. slurmrestd 26.05 serves an 890 KB OpenAPI document;
    /// reading it in every hook would delay every answer to Nix by ~50 ms.
    pub async fn connect_cached(
        host: &str,
        port: u16,
        transport: &Transport,
        token: &str,
        forced_version: Option<&str>,
        cache_dir: Option<&std::path::Path>,
    ) -> anyhow::Result<SlurmRest> {
        let creds = Credentials::parse(token)?;
        let client = http_client(transport)?;
        let configured_host = host.to_owned();
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        let mut rest = SlurmRest {
            client,
            transport: transport.clone(),
            host: configured_host,
            base_url: format!("{}://{host}:{port}", transport.scheme()),
            version: ApiVersion(0),
            paths: Paths {
                submit: String::new(),
                job: (String::new(), String::new()),
                jobs: String::new(),
                jobs_state: None,
            },
            user: creds.user.clone(),
            creds: std::sync::RwLock::new(Arc::new(creds)),
            renewal: Renewal::default(),
            renewed: AtomicBool::new(false),
            permits: Permits::new(cache_dir),
        };
        let cache = cache_dir.map(|d| {
            let key: String = format!(
                "{}_{host}_{port}_{}",
                transport.cache_tag(),
                forced_version.unwrap_or("auto")
            )
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
            d.join(format!("slurm-rest-{key}.json"))
        });
        if let Some((version, paths)) = cache.as_deref().and_then(read_cached_negotiation) {
            rest.version = version;
            rest.paths = paths;
            return Ok(rest);
        }
        let doc = rest.openapi_document().await?;
        let served = served_versions(&doc);
        let (version, paths) =
            choose_version(&served, forced_version).map_err(|detail| Error::Version {
                endpoint: rest.describe(),
                detail,
            })?;
        rest.version = version;
        rest.paths = paths;
        if let Some(path) = &cache {
            write_cached_negotiation(path, version, &rest.paths);
        }
        tracing::debug!(endpoint = %rest.describe(), user = ?rest.user, "negotiated Slurm REST API");
        Ok(rest)
    }

    /// The negotiated API version.
    #[cfg(test)]
    pub fn version(&self) -> ApiVersion {
        self.version
    }

    /// How this client reaches slurmrestd.
    pub fn transport(&self) -> &Transport {
        &self.transport
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
        Err(self.error(&answer, action).into())
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

    /// Sends the request; if slurmrestd rejects the token and its source now holds a
    /// different one (credentials.rs), sends it once more with that one.
    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        action: &str,
    ) -> Result<Answer, Error> {
        let creds = self.creds();
        let answer = self
            .send(method.clone(), path, body, action, &creds)
            .await?;
        if !self.rejects_token(&answer).0 {
            return Ok(answer);
        }
        let Renewed::New(renewed) = self.renewal.renew(&creds.token).await else {
            return Ok(answer);
        };
        let renewed = Arc::new(renewed);
        *self.creds.write().unwrap_or_else(|p| p.into_inner()) = renewed.clone();
        self.renewed.store(true, Ordering::SeqCst);
        tracing::info!(endpoint = %self.describe(), "token rejected; retrying with the renewed one");
        self.send(method, path, body, action, &renewed).await
    }

    fn creds(&self) -> Arc<Credentials> {
        self.creds.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Where the token is read again when slurmrestd rejects it.
    pub fn with_token_source(mut self, source: TokenSource) -> SlurmRest {
        self.renewal = Renewal::new(Some(source));
        self
    }

    /// Whether a rejected token was replaced by a renewed one since the last call.
    pub fn take_renewal(&self) -> bool {
        self.renewed.swap(false, Ordering::SeqCst)
    }

    /// Whether the answer rejects the token, and whether that is only probable (22.05–23.11
    /// answer a bad token with a 500 that a lost slurmctld could also cause).
    fn rejects_token(&self, answer: &Answer) -> (bool, bool) {
        let numbers = error_numbers(answer.json.as_ref());
        let ambiguous = self.version == ApiVersion(38)
            && answer.status == StatusCode::INTERNAL_SERVER_ERROR
            && !numbers.is_empty()
            && numbers.iter().all(|n| V0_0_38_AUTH_ERRORS.contains(n));
        let rejected =
            ambiguous || is_auth_failure(answer.status, &answer.text, answer.json.as_ref());
        (rejected, ambiguous)
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        action: &str,
        creds: &Credentials,
    ) -> Result<Answer, Error> {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base_url));
        request = request.headers(creds.headers.clone());
        if let Some(body) = body {
            request = request.json(body);
        }
        let unreachable = |source: reqwest::Error| match rustls_error(&source) {
            Some(tls) => {
                let (problem, check) = tls_problem(tls, &self.host, &self.transport);
                Error::Tls {
                    endpoint: self.describe(),
                    action: action.to_owned(),
                    problem,
                    check,
                }
            }
            None => Error::Unreachable {
                endpoint: self.describe(),
                action: action.to_owned(),
                source,
            },
        };
        let _permit = self
            .permits
            .acquire(tokio::time::Instant::now() + REQUEST_TIMEOUT)
            .await
            .map_err(|detail| Error::Busy {
                endpoint: self.describe(),
                action: action.to_owned(),
                detail,
            })?;
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let text = response.text().await.map_err(unreachable)?;
        let json = serde_json::from_str(&text).ok();
        Ok(Answer { status, text, json })
    }

    /// The error for an unsuccessful answer.
    fn error(&self, answer: &Answer, action: &str) -> Error {
        let detail = self
            .creds()
            .token
            .scrub(error_detail(&answer.text, answer.json.as_ref()));
        let (endpoint, action, status) = (self.describe(), action.to_owned(), answer.status);
        let numbers = error_numbers(answer.json.as_ref());
        let detail = if status.is_redirection() {
            format!(
                "{detail} (nsh follows no redirect, so the token goes only where nsh.conf says; \
                 if this is a TLS proxy, set slurm-api-scheme = https and its port)"
            )
        } else {
            detail
        };
        if numbers.iter().any(|n| LIMIT_ERRORS.contains(n)) {
            return Error::Limit {
                endpoint,
                action,
                detail,
            };
        }
        let (rejected, ambiguous) = self.rejects_token(answer);
        if rejected {
            Error::TokenRejected {
                endpoint,
                action,
                status,
                detail,
                ambiguous,
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
            detail: self.creds().token.scrub(detail.into()),
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
        // A refusal can come with HTTP 200 and no job id on some versions: check the list.
        let refused = error_numbers(answer.json.as_ref())
            .iter()
            .any(|n| LIMIT_ERRORS.contains(n));
        if !answer.status.is_success() || refused {
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
            return Ok(JobStatus::unknown());
        }
        if !answer.status.is_success() {
            return Err(self.error(&answer, &action).into());
        }
        let Some(json) = &answer.json else {
            return Err(self.bad_answer(&action, "the answer is not JSON").into());
        };
        match find_job(json, id) {
            Some(job) => job_status(job).map_err(|detail| self.bad_answer(&action, detail).into()),
            None => Ok(JobStatus::unknown()),
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

    fn name(&self) -> &'static str {
        "slurm"
    }

    fn cpu_count_vars(&self) -> &'static str {
        SLURM_CPU_VARS
    }

    fn error_kind(&self, e: &anyhow::Error) -> ErrorKind {
        e.chain()
            .find_map(|c| c.downcast_ref::<Error>().map(Error::kind))
            .unwrap_or(ErrorKind::Other)
    }

    fn rejects_credentials(&self, e: &anyhow::Error) -> bool {
        e.chain().any(|c| {
            matches!(
                c.downcast_ref::<Error>(),
                Some(Error::TokenRejected { .. } | Error::BadToken(_))
            )
        })
    }

    fn describe(&self) -> String {
        if self.version.is_supported() {
            format!("slurmrestd at {} ({})", self.base_url, self.version)
        } else {
            format!("slurmrestd at {}", self.base_url)
        }
    }
}

mod credentials;
mod errors;
#[cfg(test)]
mod limit_tests;
mod permits;
#[cfg(test)]
mod renewal_tests;
mod shapes;
#[cfg(test)]
mod testbed_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tls_tests;
mod transport;
