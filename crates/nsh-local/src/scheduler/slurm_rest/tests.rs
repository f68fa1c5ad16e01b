//! Unit tests of the Slurm REST backend: pure shape and mapping functions against the
//! answers captured from the testbed's slurmrestd (22.05 and 26.05), and the
//! HTTP side against a scripted server on 127.0.0.1.

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

use super::shapes::{Paths, choose_version, exit_of, job_status, served_versions, submit_body};
use super::{ApiVersion, Error, SlurmRest, Token};
use crate::scheduler::{EndReason, JobId, JobParams, JobSpec, JobState, JobStatus, Scheduler};

const SECRET_SIGNATURE: &str = "c2VjcmV0LXNpZ25hdHVyZS1kby1ub3QtbGVhaw";

/// A JWT shaped like `scontrol token`'s, for user `sun`.
pub(super) fn token_for(sun: &str) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = b64.encode(format!(
        r#"{{"exp":1795904789,"iat":1795818389,"sun":"{sun}"}}"#
    ));
    format!("{header}.{payload}.{SECRET_SIGNATURE}")
}

pub(super) fn spec() -> JobSpec {
    JobSpec {
        name: "nsh-hello".into(),
        script: "#!/bin/sh\nexit 0\n".into(),
        environment: vec![
            ("PATH".into(), "/usr/bin:/bin".into()),
            ("A".into(), "x=y".into()),
        ],
        working_dir: "/home/alice".into(),
        params: JobParams::SlurmRest(serde_json::Map::new()),
        exclude_hosts: Vec::new(),
    }
}

fn v(n: u8) -> ApiVersion {
    ApiVersion(n)
}

// --- versions and paths -------------------------------------------------------------------

#[test]
fn version_parse() {
    assert_eq!(ApiVersion::parse("v0.0.42"), Some(v(42)));
    assert_eq!(ApiVersion::parse("0.0.38"), Some(v(38)));
    assert_eq!(ApiVersion::parse(" v0.0.45 "), Some(v(45)));
    for bad in [
        "", "v0.0.", "v0.1.42", "42", "v0.0.4x", "v0.0.+4", "v0.0.999",
    ] {
        assert_eq!(ApiVersion::parse(bad), None, "{bad:?}");
    }
    assert_eq!(v(40).to_string(), "v0.0.40");
}

/// The paths 22.05 lists (captured on the bookworm testbed): no trailing slashes.
pub(super) fn doc_2205() -> Value {
    let mut paths = serde_json::Map::new();
    for version in ["v0.0.36", "v0.0.37", "v0.0.38"] {
        for p in [
            "diag",
            "job/submit",
            "job/{job_id}",
            "jobs",
            "nodes",
            "ping",
            "partitions",
        ] {
            paths.insert(format!("/slurm/{version}/{p}"), json!({}));
        }
    }
    json!({"openapi": "3.0.2", "info": {"version": "0.0.36"}, "paths": paths})
}

/// The paths 26.05 lists (captured on the sid testbed): collections end with `/`.
pub(super) fn doc_2605() -> Value {
    let mut paths = serde_json::Map::new();
    for version in ["v0.0.42", "v0.0.43", "v0.0.44", "v0.0.45"] {
        for p in [
            "job/submit",
            "job/{job_id}",
            "job/{job_id}/requeue",
            "jobs/",
            "jobs/state/",
        ] {
            paths.insert(format!("/slurm/{version}/{p}"), json!({}));
        }
        paths.insert(format!("/slurm/{version}/ping/"), json!({}));
    }
    json!({"openapi": "3.0.3", "info": {"version": "Slurm-26.05.5"}, "paths": paths})
}

#[test]
fn negotiates_newest_served_version_with_exact_paths() {
    let (version, paths) = choose_version(&served_versions(&doc_2205()), None).unwrap();
    assert_eq!(version, v(38));
    assert_eq!(paths.submit, "/slurm/v0.0.38/job/submit");
    assert_eq!(paths.job("17"), "/slurm/v0.0.38/job/17");
    assert_eq!(paths.jobs, "/slurm/v0.0.38/jobs");
    assert_eq!(paths.jobs_state, None);

    let (version, paths) = choose_version(&served_versions(&doc_2605()), None).unwrap();
    assert_eq!(version, v(45));
    assert_eq!(paths.submit, "/slurm/v0.0.45/job/submit");
    assert_eq!(paths.job("17"), "/slurm/v0.0.45/job/17");
    assert_eq!(paths.jobs, "/slurm/v0.0.45/jobs/");
    assert_eq!(
        paths.jobs_state.as_deref(),
        Some("/slurm/v0.0.45/jobs/state/")
    );
}

#[test]
fn ignores_versions_nsh_does_not_speak() {
    let mut doc = doc_2605();
    doc["paths"]["/slurm/v0.0.46/job/submit"] = json!({});
    doc["paths"]["/slurmdb/v0.0.45/jobs/"] = json!({});
    let (version, _) = choose_version(&served_versions(&doc), None).unwrap();
    assert_eq!(version, v(45));
}

#[test]
fn forced_version_must_be_served() {
    let served = served_versions(&doc_2605());
    let (version, paths) = choose_version(&served, Some("v0.0.43")).unwrap();
    assert_eq!(
        (version, paths.submit.as_str()),
        (v(43), "/slurm/v0.0.43/job/submit")
    );
    let err = choose_version(&served, Some("v0.0.40")).unwrap_err();
    assert!(err.contains("v0.0.42, v0.0.43, v0.0.44, v0.0.45"), "{err}");
    let err = choose_version(&served, Some("v0.0.36")).unwrap_err();
    assert!(err.contains("v0.0.38 to v0.0.45"), "{err}");
    let err = choose_version(&served, Some("latest")).unwrap_err();
    assert!(err.contains("v0.0.NN"), "{err}");
}

#[test]
fn no_common_version_is_explained() {
    let mut doc = doc_2205();
    let paths = doc["paths"].as_object_mut().unwrap();
    paths.retain(|p, _| !p.contains("v0.0.38"));
    let err = choose_version(&served_versions(&doc), None).unwrap_err();
    assert!(err.contains("v0.0.36, v0.0.37"), "{err}");
    assert!(err.contains("openapi/v0.0.38"), "{err}");
    let err = choose_version(&served_versions(&json!({})), None).unwrap_err();
    assert!(err.contains("no /slurm/ paths"), "{err}");
}

#[test]
fn a_version_without_submit_path_is_not_chosen() {
    let mut doc = doc_2605();
    doc["paths"]
        .as_object_mut()
        .unwrap()
        .remove("/slurm/v0.0.45/job/submit");
    let (version, _) = choose_version(&served_versions(&doc), None).unwrap();
    assert_eq!(version, v(44));
}

// --- submit bodies ------------------------------------------------------------------------

#[test]
fn body_v0_0_38_has_top_level_script_and_object_environment() {
    for (n, requeue) in [(38, "no_requeue"), (39, "requeue")] {
        let body = submit_body(v(n), &spec()).unwrap();
        assert_eq!(
            body,
            json!({
                "script": "#!/bin/sh\nexit 0\n",
                "job": {
                    "name": "nsh-hello",
                    "current_working_directory": "/home/alice",
                    "environment": {"PATH": "/usr/bin:/bin", "A": "x=y"},
                    "standard_output": "/dev/null",
                    "standard_error": "/dev/null",
                    requeue: n == 38,
                }
            }),
            "v0.0.{n}"
        );
    }
}

#[test]
fn body_v0_0_40_and_later_has_job_script_and_list_environment() {
    for n in 40..=45 {
        let body = submit_body(v(n), &spec()).unwrap();
        assert_eq!(
            body,
            json!({
                "job": {
                    "name": "nsh-hello",
                    "current_working_directory": "/home/alice",
                    "environment": ["PATH=/usr/bin:/bin", "A=x=y"],
                    "standard_output": "/dev/null",
                    "standard_error": "/dev/null",
                    "requeue": false,
                    "script": "#!/bin/sh\nexit 0\n",
                }
            }),
            "v0.0.{n}"
        );
    }
}

#[test]
fn extra_params_merge_but_nsh_fields_win() {
    let mut job = spec();
    job.params = JobParams::SlurmRest(
        json!({
            "partition": "held",
            "cpus_per_task": 2,
            "name": "renamed",
            "script": "#!/bin/sh\nid > /tmp/pwned\n",
            "environment": {"LD_PRELOAD": "/tmp/x.so"},
            "standard_output": "/etc/passwd",
            "current_working_directory": "/tmp",
            "requeue": true,
            "memory_per_node": {"set": true, "number": 1024},
        })
        .as_object()
        .cloned()
        .unwrap(),
    );
    for version in [38, 39, 42] {
        let body = submit_body(v(version), &job).unwrap();
        assert_eq!(body["job"]["partition"], "held");
        assert_eq!(body["job"]["cpus_per_task"], 2);
        assert_eq!(body["job"]["memory_per_node"]["number"], 1024);
        assert_eq!(body["job"]["name"], spec().name);
        assert_eq!(body["job"]["standard_output"], "/dev/null");
        assert_eq!(body["job"]["current_working_directory"], spec().working_dir);
        let script = if version >= 40 {
            &body["job"]["script"]
        } else {
            &body["script"]
        };
        assert_eq!(*script, spec().script, "v0.0.{version}");
        assert!(
            !body["job"]["environment"]
                .to_string()
                .contains("LD_PRELOAD")
        );
    }
    assert_eq!(submit_body(v(42), &job).unwrap()["job"]["requeue"], false);
}

#[test]
fn bad_environment_names_are_refused() {
    for name in ["", "A=B", "A\0"] {
        let mut job = spec();
        job.environment.push((name.into(), "x".into()));
        assert!(submit_body(v(45), &job).is_err(), "{name:?}");
    }
}

// --- job states ---------------------------------------------------------------------------

fn status(job: Value) -> JobStatus {
    job_status(&job).unwrap()
}

#[test]
fn sid_26_05_samples() {
    // Captured on the sid testbed: identical on v0.0.42–45 (and 24.11's v0.0.40–42).
    let done = status(
        json!({"job_id":2,"job_state":["COMPLETED"],"batch_host":"node1",
        "nodes":"node1",
        "exit_code":{"status":["SUCCESS"],"return_code":{"set":true,"infinite":false,"number":0},
                     "signal":{"id":{"set":false,"infinite":false,"number":0},"name":""}},
        "state_reason":"None","user_name":"alice"}),
    );
    assert_eq!(
        done,
        JobStatus {
            state: JobState::Finished,
            raw_state: "COMPLETED".into(),
            host: Some("node1".into()),
            exit_code: Some(0),
            signal: None,
            reason: None,
            in_queue: false,
            end: Some(EndReason::Exited),
            waits_for_nodes: false,
        }
    );

    let exit3 = status(
        json!({"job_id":3,"job_state":["FAILED"],"batch_host":"node1",
        "exit_code":{"status":["ERROR"],"return_code":{"set":true,"infinite":false,"number":3},
                     "signal":{"id":{"set":false,"infinite":false,"number":0},"name":""}},
        "state_reason":"NonZeroExitCode"}),
    );
    assert_eq!(exit3.state, JobState::Finished);
    assert_eq!((exit3.exit_code, exit3.signal), (Some(3), None));
    assert_eq!(exit3.reason.as_deref(), Some("NonZeroExitCode"));

    let cancelled = status(json!({"job_id":4,"job_state":["CANCELLED","COMPLETING"],
        "batch_host":"node2",
        "exit_code":{"status":["SIGNALED"],"return_code":{"set":false,"infinite":false,"number":0},
                     "signal":{"id":{"set":true,"infinite":false,"number":15},"name":"TERM"}}}));
    assert_eq!(cancelled.state, JobState::Failed);
    assert_eq!(cancelled.raw_state, "CANCELLED,COMPLETING");
    assert_eq!((cancelled.exit_code, cancelled.signal), (None, Some(15)));
    // Ended, but squeue still lists it until it has completed: it holds its queue slot.
    assert!(cancelled.in_queue);
}

#[test]
fn in_queue_follows_what_squeue_lists() {
    for (words, listed) in [
        (json!(["PENDING"]), true),
        (json!(["RUNNING"]), true),
        (json!(["COMPLETED", "COMPLETING"]), true),
        (json!("COMPLETING"), true),
        (json!(["COMPLETED"]), false),
        (json!(["CANCELLED"]), false),
        (json!("NODE_FAIL"), false),
    ] {
        let st = status(json!({"job_id":1,"job_state":words,"batch_host":"node1"}));
        assert_eq!(st.in_queue, listed, "{words}");
    }
    assert!(!JobStatus::unknown().in_queue);
}

#[test]
fn bookworm_22_05_samples() {
    // Captured on the bookworm testbed (v0.0.38): job state and exit code.
    let done = status(json!({"job_id":3,"job_state":"COMPLETED","exit_code":0,
        "batch_host":"node1","state_reason":"None"}));
    assert_eq!(
        (done.state, done.exit_code, done.host.as_deref()),
        (JobState::Finished, Some(0), Some("node1"))
    );

    let exit3 = status(
        json!({"job_state":"FAILED","exit_code":768,"batch_host":"node2",
        "state_reason":"NonZeroExitCode","derived_exit_code":0}),
    );
    assert_eq!(
        (exit3.state, exit3.exit_code, exit3.signal),
        (JobState::Finished, Some(3), None)
    );

    let exit7 = status(json!({"job_state":"FAILED","exit_code":1792,"batch_host":"node2"}));
    assert_eq!(exit7.exit_code, Some(7));

    let cancelled = status(json!({"job_state":"CANCELLED","exit_code":15,"batch_host":"node1"}));
    assert_eq!(
        (cancelled.state, cancelled.exit_code, cancelled.signal),
        (JobState::Failed, None, Some(15))
    );
}

#[test]
fn waiting_and_running_states() {
    let held = status(json!({"job_state":["PENDING"],"batch_host":"","nodes":"",
        "state_reason":"PartitionInactive",
        "exit_code":{"return_code":{"set":true,"infinite":false,"number":0}}}));
    assert_eq!(held.state, JobState::Pending);
    assert_eq!((held.host, held.exit_code), (None, None));
    assert_eq!(held.reason.as_deref(), Some("PartitionInactive"));

    let held_38 = status(json!({"job_state":"PENDING","batch_host":"","exit_code":0,
        "state_reason":"PartitionDown"}));
    assert_eq!(
        (held_38.state, held_38.exit_code),
        (JobState::Pending, None)
    );

    let booting = status(json!({"job_state":["RUNNING","CONFIGURING"],"batch_host":"node1"}));
    assert_eq!(booting.state, JobState::Pending);

    for state in [
        json!(["RUNNING"]),
        json!("RUNNING"),
        json!("COMPLETING"),
        json!(["STAGE_OUT"]),
    ] {
        let running = status(json!({"job_state": state, "batch_host": "node2", "exit_code": 0}));
        assert_eq!(running.state, JobState::Running, "{state}");
        assert_eq!(running.exit_code, None);
    }
    for state in ["SUSPENDED", "REQUEUED", "REQUEUE_HOLD"] {
        assert_eq!(
            status(json!({"job_state":[state]})).state,
            JobState::Pending,
            "{state}"
        );
    }
    assert_eq!(
        status(json!({"job_state":["SOMETHING_NEW"]})).state,
        JobState::Pending
    );
}

#[test]
fn terminal_states() {
    let done = status(json!({"job_state":["COMPLETED","COMPLETING"],"batch_host":"node1"}));
    assert_eq!((done.state, done.exit_code), (JobState::Finished, Some(0)));
    for word in [
        "TIMEOUT",
        "NODE_FAIL",
        "PREEMPTED",
        "BOOT_FAIL",
        "DEADLINE",
        "OUT_OF_MEMORY",
        "CANCELLED",
    ] {
        assert_eq!(
            status(json!({"job_state":[word]})).state,
            JobState::Failed,
            "{word}"
        );
        assert_eq!(
            status(json!({"job_state":word})).state,
            JobState::Failed,
            "{word}"
        );
    }
    // FAILED without a non-zero exit code: Slurm failed the job, the script did not run.
    let launch = status(json!({"job_state":["FAILED"],
        "exit_code":{"return_code":{"set":true,"infinite":false,"number":0}}}));
    assert_eq!(launch.state, JobState::Failed);
    let killed = status(json!({"job_state":"FAILED","exit_code":9}));
    assert_eq!((killed.state, killed.signal), (JobState::Failed, Some(9)));
}

#[test]
fn host_falls_back_to_a_single_node_name() {
    let job = status(json!({"job_state":["RUNNING"],"batch_host":"","nodes":"node2"}));
    assert_eq!(job.host.as_deref(), Some("node2"));
    let job = status(json!({"job_state":["RUNNING"],"nodes":"node[1-2]"}));
    assert_eq!(job.host, None);
}

#[test]
fn hostile_records_do_not_panic() {
    for record in [
        json!({}),
        json!({"job_state": 5}),
        json!({"job_state": [1, null, ""]}),
        json!(null),
        json!([]),
    ] {
        assert!(job_status(&record).is_err(), "{record}");
    }
    for exit in [
        json!(-1),
        json!(1e30),
        json!(u64::MAX),
        json!({"return_code": {"set": true, "number": 1e40}}),
        json!({"return_code": {"set": true, "number": i64::MAX}}),
        json!({"return_code": "3", "signal": []}),
    ] {
        let (code, signal) = exit_of(Some(&exit));
        assert!(code.is_none_or(|c| c == 0) && signal.is_none(), "{exit}");
    }
}

// --- token --------------------------------------------------------------------------------

#[test]
fn user_comes_from_the_sun_claim() {
    let token = Token::parse(&token_for("alice")).unwrap();
    assert_eq!(token.user().unwrap().as_deref(), Some("alice"));
    // As printed by `scontrol token`, with a newline from the file.
    let line = format!("SLURM_JWT={}\n", token_for("root"));
    assert_eq!(
        Token::parse(&line).unwrap().user().unwrap().as_deref(),
        Some("root")
    );
    // Padded base64url is accepted too.
    let b64 = base64::engine::general_purpose::URL_SAFE;
    let padded = format!("e30.{}.sig", b64.encode(br#"{"sun":"bob"}"#));
    assert!(padded.contains('='));
    assert_eq!(
        Token::parse(&padded).unwrap().user().unwrap().as_deref(),
        Some("bob")
    );
    // No `sun`: no user-name header (24.11+ takes the user from the token).
    let anon = format!("e30.{}.sig", b64.encode(br#"{"exp":1}"#));
    assert_eq!(Token::parse(&anon).unwrap().user().unwrap(), None);
}

#[test]
fn malformed_tokens_are_refused_without_quoting_them() {
    for bad in [
        "",
        "  \n",
        "abc",
        "a.b",
        "a.b.c.d",
        "e30.!!!.sig",
        "e30.bm90IGpzb24.sig",
        "a b.c.d",
    ] {
        let result = Token::parse(bad).and_then(|t| t.user());
        let err = result.expect_err(bad).to_string();
        assert!(err.contains("slurm-jwt-token"), "{err}");
        if bad.len() > 3 {
            assert!(!err.contains(bad.trim()), "{err}");
        }
    }
}

#[test]
fn debug_never_shows_the_token() {
    let token = Token::parse(&token_for("alice")).unwrap();
    assert_eq!(format!("{token:?}"), "<redacted>");
    let scrubbed = token.scrub(format!("echo: {}", token_for("alice")));
    assert_eq!(scrubbed, "echo: <redacted>");
}

// --- HTTP against a scripted server -------------------------------------------------------

#[derive(Debug, Clone)]
pub(super) struct Request {
    pub(super) method: String,
    pub(super) path: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Request {
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

type Route = dyn Fn(&Request) -> (u16, String) + Send + Sync;

/// A one-request-per-connection HTTP/1.1 server; records every request.
pub(super) struct Server {
    pub(super) port: u16,
    seen: Arc<Mutex<Vec<Request>>>,
}

impl Server {
    async fn start(route: impl Fn(&Request) -> (u16, String) + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let route: Arc<Route> = Arc::new(route);
        let log = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let (route, log) = (route.clone(), log.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let head_end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                    let mut lines = head.split("\r\n");
                    let mut first = lines.next().unwrap_or("").split(' ');
                    let method = first.next().unwrap_or("").to_owned();
                    let path = first.next().unwrap_or("").to_owned();
                    let headers: Vec<(String, String)> = lines
                        .filter_map(|l| l.split_once(':'))
                        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
                        .collect();
                    let length = headers
                        .iter()
                        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                        .and_then(|(_, v)| v.parse::<usize>().ok())
                        .unwrap_or(0);
                    while buf.len() < head_end + length {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let body = String::from_utf8_lossy(&buf[head_end..]).into_owned();
                    let request = Request {
                        method,
                        path,
                        headers,
                        body,
                    };
                    let (status, reply) = route(&request);
                    log.lock().unwrap().push(request);
                    let kind = if reply.starts_with(['{', '[']) {
                        "application/json"
                    } else {
                        "text/plain"
                    };
                    let response = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\
                         Connection: close\r\n\r\n{reply}",
                        reply.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                });
            }
        });
        Server { port, seen }
    }

    pub(super) fn requests(&self) -> Vec<Request> {
        self.seen.lock().unwrap().clone()
    }
}

/// Serves `doc` as the OpenAPI document and `route` for everything else.
pub(super) async fn slurmrestd(
    doc: Value,
    route: impl Fn(&Request) -> Option<(u16, String)> + Send + Sync + 'static,
) -> Server {
    Server::start(move |r| {
        if r.path.starts_with("/openapi") {
            return (200, doc.to_string());
        }
        route(r).unwrap_or((
            404,
            r#"{"errors":[{"error":"Unable to find path","error_number":9003}]}"#.into(),
        ))
    })
    .await
}

#[tokio::test]
async fn submit_on_22_05_sends_the_v0_0_38_body_and_headers() {
    let server = slurmrestd(doc_2205(), |r| {
        (r.method == "POST" && r.path == "/slurm/v0.0.38/job/submit").then(|| {
            (
                200,
                r#"{"errors":[],"job_id":3,"step_id":"BATCH","job_submit_user_msg":""}"#.into(),
            )
        })
    })
    .await;
    let token = token_for("alice");
    let rest = SlurmRest::connect("127.0.0.1", server.port, &token, None)
        .await
        .unwrap();
    assert_eq!(rest.version(), v(38));
    assert_eq!(
        rest.describe(),
        format!("slurmrestd at http://127.0.0.1:{} (v0.0.38)", server.port)
    );
    assert_eq!(rest.submit(&spec()).await.unwrap(), JobId("3".into()));

    let requests = server.requests();
    assert_eq!(requests[0].path, "/openapi/v3");
    let submit = requests.last().unwrap();
    assert_eq!(submit.header("x-slurm-user-token"), Some(token.as_str()));
    assert_eq!(submit.header("x-slurm-user-name"), Some("alice"));
    let body: Value = serde_json::from_str(&submit.body).unwrap();
    assert_eq!(body, submit_body(v(38), &spec()).unwrap());
    assert!(!format!("{rest:?}").contains(SECRET_SIGNATURE));
}

#[tokio::test]
async fn falls_back_to_openapi_json() {
    let server = Server::start(|r| match r.path.as_str() {
        "/openapi.json" => (200, doc_2605().to_string()),
        _ => (404, "not found".into()),
    })
    .await;
    let rest = SlurmRest::connect("127.0.0.1", server.port, &token_for("alice"), None)
        .await
        .unwrap();
    assert_eq!(rest.version(), v(45));
    let paths: Vec<_> = server.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/openapi/v3", "/openapi", "/openapi.json"]);
}

#[tokio::test]
async fn rejected_token_is_named_but_never_quoted() {
    let token = token_for("alice");
    let echo = token.clone();
    let server = Server::start(move |_| (401, format!("Authentication failure {echo}"))).await;
    let err = SlurmRest::connect("127.0.0.1", server.port, &token, None)
        .await
        .unwrap_err();
    let text = format!("{err:#} {err:?}");
    assert!(text.contains("slurm-jwt-token"), "{text}");
    assert!(text.contains("401"), "{text}");
    assert!(!text.contains(SECRET_SIGNATURE), "{text}");
    assert!(matches!(
        err.downcast_ref::<Error>(),
        Some(Error::TokenRejected { .. })
    ));

    // 24.11+: 511 with error 1007 on job requests (the document itself is served).
    let server = slurmrestd(doc_2605(), |_| {
        Some((
            511,
            r#"{"errors":[{"description":"","error_number":1007,"error":"Protocol authentication error","source":""}]}"#
                .into(),
        ))
    })
    .await;
    let rest = SlurmRest::connect("127.0.0.1", server.port, &token, None)
        .await
        .unwrap();
    for err in [
        rest.ping().await.unwrap_err(),
        rest.submit(&spec()).await.unwrap_err(),
    ] {
        let text = format!("{err:#}");
        assert!(
            text.contains("rejected the JWT") && text.contains("slurm-jwt-token"),
            "{text}"
        );
        assert!(text.contains("Protocol authentication error"), "{text}");
        assert!(!text.contains(SECRET_SIGNATURE), "{text}");
    }
    assert!(rest.status(&JobId("5".into())).await.is_err());
}

#[tokio::test]
async fn rejected_token_on_22_05_is_a_probable_rejection() {
    // Captured from 22.05.8 with a forged signature: submit, then job query.
    let server = slurmrestd(doc_2205(), |r| {
        let body = if r.method == "POST" {
            r#"{"meta":{},"errors":[{"error_code":5005,"error":"Zero Bytes were transmitted or received"}]}"#
        } else {
            r#"{"meta":{},"errors":[{"description":"Unable to find JobId=20","error_number":-1,"error":"Unspecified error","source":"slurm_load_job"}],"jobs":[]}"#
        };
        Some((500, body.into()))
    })
    .await;
    let rest = SlurmRest::connect("127.0.0.1", server.port, &token_for("alice"), None)
        .await
        .unwrap();
    let submit = rest.submit(&spec()).await.unwrap_err();
    let status = rest.status(&JobId("20".into())).await.unwrap_err();
    for err in [submit, status] {
        let text = format!("{err:#}");
        assert!(text.contains("probably rejected the JWT"), "{text}");
        assert!(
            text.contains("slurm-jwt-token") && text.contains("HTTP 500"),
            "{text}"
        );
        let e = err.downcast_ref::<Error>().unwrap();
        assert!(
            matches!(
                e,
                Error::TokenRejected {
                    ambiguous: true,
                    ..
                }
            ) && e.is_transient()
        );
    }
    let text = format!("{:#}", rest.submit(&spec()).await.unwrap_err());
    assert!(
        text.contains("Zero Bytes were transmitted or received (error 5005)"),
        "{text}"
    );
}

#[tokio::test]
async fn submit_errors_quote_the_server() {
    let server = slurmrestd(doc_2605(), |r| {
        (r.path == "/slurm/v0.0.45/job/submit").then(|| {
            (
                422,
                r#"{"errors":[{"description":"Batch job submission failed","error_number":2127,"error":"Environment is missing in job","source":"slurm_submit_batch_job()"}],"warnings":[]}"#
                    .into(),
            )
        })
    })
    .await;
    let rest = SlurmRest::connect("127.0.0.1", server.port, &token_for("alice"), None)
        .await
        .unwrap();
    let err = rest.submit(&spec()).await.unwrap_err();
    let text = format!("{err:#}");
    let endpoint = format!("slurmrestd at http://127.0.0.1:{} (v0.0.45)", server.port);
    assert!(text.contains(&endpoint), "{text}");
    assert!(text.contains("422"), "{text}");
    assert!(text.contains("Environment is missing in job"), "{text}");
    assert!(text.contains("Batch job submission failed"), "{text}");
    assert!(text.contains("2127"), "{text}");
    assert!(text.contains("nsh-hello"), "{text}");
}

#[tokio::test]
async fn non_json_errors_are_truncated() {
    let server = slurmrestd(doc_2605(), |_| Some((502, "x".repeat(1000)))).await;
    let rest = SlurmRest::connect("127.0.0.1", server.port, &token_for("alice"), None)
        .await
        .unwrap();
    let err = rest.submit(&spec()).await.unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("502") && text.contains(&"x".repeat(300)),
        "{text}"
    );
    assert!(!text.contains(&"x".repeat(301)), "{text}");
    assert!(err.downcast_ref::<Error>().is_some_and(Error::is_transient));
}

#[tokio::test]
async fn unknown_jobs_on_every_version() {
    // 24.11+: 404 + 2017. 22.05: 500 + 2017.
    let server = slurmrestd(doc_2605(), |_| {
        Some((
            404,
            r#"{"errors":[{"error_number":2017,"error":"Invalid job id specified"}]}"#.into(),
        ))
    })
    .await;
    let rest = SlurmRest::connect("127.0.0.1", server.port, &token_for("alice"), None)
        .await
        .unwrap();
    let status = rest.status(&JobId("99".into())).await.unwrap();
    assert_eq!(status.state, JobState::Unknown);
    assert_eq!(
        server.requests().last().unwrap().path,
        "/slurm/v0.0.45/job/99"
    );

    let server = slurmrestd(doc_2205(), |_| {
        Some((
            500,
            r#"{"errors":[{"error":"Invalid job id specified","error_number":2017}]}"#.into(),
        ))
    })
    .await;
    let rest = SlurmRest::connect("127.0.0.1", server.port, &token_for("alice"), None)
        .await
        .unwrap();
    assert_eq!(
        rest.status(&JobId("99".into())).await.unwrap().state,
        JobState::Unknown
    );
    rest.cancel(&JobId("99".into())).await.unwrap();
    let delete = server.requests().pop().unwrap();
    assert_eq!(
        (delete.method.as_str(), delete.path.as_str()),
        ("DELETE", "/slurm/v0.0.38/job/99")
    );
}

#[tokio::test]
async fn cancel_accepts_gone_jobs_and_reports_the_rest() {
    let server = slurmrestd(doc_2605(), |r| {
        let body = match r.path.as_str() {
            "/slurm/v0.0.45/job/1" => r#"{"status":[],"errors":[],"warnings":[]}"#,
            "/slurm/v0.0.45/job/2" => {
                r#"{"status":[{"error":{"code":2021,"string":"Job/step already completing or completed"},"job_id":{"set":true,"number":2}}],"errors":[],"warnings":[]}"#
            }
            "/slurm/v0.0.45/job/3" => {
                r#"{"status":[{"error":{"code":2017,"string":"Invalid job id specified"}}],"errors":[],"warnings":[]}"#
            }
            "/slurm/v0.0.45/job/4" => {
                r#"{"status":[{"error":{"code":2002,"string":"Access/permission denied"}}],"errors":[],"warnings":[]}"#
            }
            _ => return None,
        };
        Some((200, body.into()))
    })
    .await;
    let rest = SlurmRest::connect("127.0.0.1", server.port, &token_for("alice"), None)
        .await
        .unwrap();
    for id in ["1", "2", "3"] {
        rest.cancel(&JobId(id.into())).await.unwrap();
    }
    let err = rest.cancel(&JobId("4".into())).await.unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("cancelling job 4") && text.contains("Access/permission denied"),
        "{text}"
    );
}

#[tokio::test]
async fn job_ids_that_need_escaping_are_refused() {
    let server = slurmrestd(doc_2605(), |_| None).await;
    let rest = SlurmRest::connect("127.0.0.1", server.port, &token_for("alice"), None)
        .await
        .unwrap();
    let before = server.requests().len();
    for id in ["", "1/../2", "1?x", "1 2"] {
        assert!(rest.status(&JobId(id.into())).await.is_err(), "{id:?}");
        assert!(rest.cancel(&JobId(id.into())).await.is_err(), "{id:?}");
    }
    assert_eq!(server.requests().len(), before);
}

#[tokio::test]
async fn unreachable_server_is_transient_and_says_where() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let err = SlurmRest::connect("127.0.0.1", port, &token_for("alice"), None)
        .await
        .unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains(&format!("http://127.0.0.1:{port}")) && text.contains("running"),
        "{text}"
    );
    assert!(err.downcast_ref::<Error>().is_some_and(Error::is_transient));
}

#[test]
fn paths_from_listing_handle_both_styles() {
    let paths = Paths::find(
        v(42),
        ["/slurm/v0.0.42/job/submit", "/slurm/v0.0.42/job/{job_id}/"],
    )
    .unwrap();
    assert_eq!(paths.job("7"), "/slurm/v0.0.42/job/7/");
    assert_eq!(paths.jobs, "/slurm/v0.0.42/jobs/");
    assert!(Paths::find(v(42), ["/slurm/v0.0.42/jobs/"]).is_none());
}

// --- how jobs end, and excluded nodes ------------------------------------------------------

#[test]
fn end_reasons() {
    let end = |words: Value| status(json!({"job_state": words, "batch_host": "node1"})).end;
    assert_eq!(end(json!(["NODE_FAIL"])), Some(EndReason::NodeFailed));
    // A job cancelled while its node failed was the node's doing.
    assert_eq!(
        end(json!(["CANCELLED", "NODE_FAIL"])),
        Some(EndReason::NodeFailed)
    );
    assert_eq!(end(json!("PREEMPTED")), Some(EndReason::Preempted));
    assert_eq!(end(json!(["BOOT_FAIL"])), Some(EndReason::LaunchFailed));
    assert_eq!(end(json!(["LAUNCH_FAILED"])), Some(EndReason::LaunchFailed));
    assert_eq!(end(json!(["TIMEOUT"])), Some(EndReason::TimeLimit));
    assert_eq!(end(json!(["OUT_OF_MEMORY"])), Some(EndReason::OutOfMemory));
    assert_eq!(end(json!(["CANCELLED"])), Some(EndReason::Cancelled));
    assert_eq!(end(json!(["COMPLETED"])), Some(EndReason::Exited));
    assert_eq!(end(json!(["RUNNING"])), None);
    assert_eq!(end(json!(["PENDING"])), None);
    for infra in ["NODE_FAIL", "PREEMPTED", "BOOT_FAIL"] {
        assert!(end(json!([infra])).unwrap().is_infrastructure(), "{infra}");
    }
    for not in [
        "CANCELLED",
        "TIMEOUT",
        "OUT_OF_MEMORY",
        "COMPLETED",
        "FAILED",
    ] {
        assert!(!end(json!([not])).unwrap().is_infrastructure(), "{not}");
    }
}

#[test]
fn pending_on_unavailable_nodes() {
    let waits = |reason: &str| {
        status(json!({"job_state": ["PENDING"], "state_reason": reason})).waits_for_nodes
    };
    assert!(waits("ReqNodeNotAvail"));
    assert!(waits("ReqNodeNotAvail, UnavailableNodes:node2"));
    assert!(waits("NodeDown"));
    assert!(!waits("Resources"));
    assert!(!waits("Priority"));
    assert!(!waits("BeginTime"));
    // Only a pending job waits.
    let running = status(json!({"job_state": ["RUNNING"], "state_reason": "NodeDown"}));
    assert!(!running.waits_for_nodes);
}

#[test]
fn excluded_nodes_join_the_derivations() {
    let mut job = spec();
    job.exclude_hosts = vec!["node1".into()];
    let body = submit_body(v(42), &job).unwrap();
    assert_eq!(body["job"]["excluded_nodes"], json!("node1"));
    // The derivation's own exclusions stay, as a string or as a list.
    for given in [json!("node3, node4"), json!(["node3", "node4"])] {
        job.params = JobParams::SlurmRest(
            json!({ "excluded_nodes": given })
                .as_object()
                .unwrap()
                .clone(),
        );
        job.exclude_hosts = vec!["node1".into(), "node3".into()];
        let body = submit_body(v(39), &job).unwrap();
        assert_eq!(body["job"]["excluded_nodes"], json!("node3,node4,node1"));
    }
    // 22.05 (v0.0.38) refuses the key: nsh adds nothing there.
    job.params = JobParams::SlurmRest(serde_json::Map::new());
    let body = submit_body(v(38), &job).unwrap();
    assert!(body["job"].get("excluded_nodes").is_none());
    // Nothing excluded: nothing added.
    let body = submit_body(v(42), &spec()).unwrap();
    assert!(body["job"].get("excluded_nodes").is_none());
}
