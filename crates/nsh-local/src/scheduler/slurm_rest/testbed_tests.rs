//! The REST backend against a real slurmrestd (the project's testbed). Ignored by a plain
//! `cargo test`; `scripts/test` runs it on every testbed generation with `--ignored`,
//! `NSH_TEST_REST_URL` (`http://10.97.0.1:6820`) and `NSH_TEST_REST_TOKEN_FILE` (a file
//! holding a JWT, e.g. `$NSH_TB_ROOT$NSH_TB_TOKEN_ALICE` from `scripts/testbed env`). Run
//! without them, it fails rather than passing untested. `NSH_TEST_REST_VERSION` (`v0.0.42`)
//! forces a version.
//! The testbed's partition `held` is DOWN, so jobs sent there stay pending.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use super::shapes::maybe_number;
use super::{Error, SlurmRest};
use crate::scheduler::{JobId, JobParams, JobSpec, JobState, JobStatus, Scheduler};

const POLL: Duration = Duration::from_millis(500);
const JOB_DEADLINE: Duration = Duration::from_secs(120);

struct Testbed {
    host: String,
    port: u16,
    token: String,
    version: Option<String>,
}

fn testbed() -> Testbed {
    let var = |name| std::env::var(name).ok().filter(|v| !v.is_empty());
    let (Some(url), Some(file)) = (var("NSH_TEST_REST_URL"), var("NSH_TEST_REST_TOKEN_FILE"))
    else {
        panic!(
            "set NSH_TEST_REST_URL and NSH_TEST_REST_TOKEN_FILE to run against a real \
             slurmrestd (see scripts/testbed env; scripts/test sets them)"
        );
    };
    let authority = url
        .trim_end_matches('/')
        .strip_prefix("http://")
        .expect("NSH_TEST_REST_URL is http://HOST:PORT");
    let (host, port) = authority.rsplit_once(':').expect("URL with a port");
    let token = std::fs::read_to_string(&file).expect("readable token file");
    Testbed {
        host: host.to_owned(),
        port: port.parse().expect("numeric port"),
        token,
        version: var("NSH_TEST_REST_VERSION"),
    }
}

fn job(name: &str, script: &str, extra: Value) -> JobSpec {
    JobSpec {
        name: format!("nsh-rest-{name}"),
        script: script.to_owned(),
        environment: vec![("PATH".into(), "/usr/bin:/bin".into())],
        working_dir: "/tmp".into(),
        params: JobParams::SlurmRest(extra.as_object().cloned().unwrap_or_default()),
        exclude_hosts: Vec::new(),
    }
}

async fn wait_for(
    rest: &SlurmRest,
    id: &JobId,
    what: &str,
    done: impl Fn(&JobStatus) -> bool,
) -> anyhow::Result<JobStatus> {
    let start = Instant::now();
    loop {
        let status = rest.status(id).await?;
        if done(&status) {
            eprintln!("job {id}: {what} after {:?}: {status:?}", start.elapsed());
            return Ok(status);
        }
        anyhow::ensure!(
            start.elapsed() < JOB_DEADLINE,
            "job {id} never {what}: {status:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// The raw `GET job/{id}` record, to check what Slurm made of the submitted fields.
async fn record(rest: &SlurmRest, id: &JobId) -> anyhow::Result<Value> {
    let answer = rest
        .request(Method::GET, &rest.paths.job(&id.0), None, "reading record")
        .await?;
    let json = answer
        .json
        .ok_or_else(|| anyhow::anyhow!("record of job {id} is not JSON"))?;
    let jobs = json.get("jobs").and_then(Value::as_array);
    Ok(jobs.and_then(|j| j.first()).cloned().unwrap_or(Value::Null))
}

#[tokio::test]
#[ignore = "needs a running testbed; scripts/test runs it with --ignored"]
async fn against_the_testbed() {
    let tb = testbed();
    let rest = SlurmRest::connect(&tb.host, tb.port, &tb.token, tb.version.as_deref())
        .await
        .unwrap();
    eprintln!("negotiated: {} as {:?}", rest.describe(), rest.user());
    rest.ping().await.unwrap();

    let mut submitted = Vec::new();
    let outcome = scenario(&rest, &mut submitted).await;
    // Leave nothing behind, whatever happened (held jobs would pend forever).
    for id in &submitted {
        rest.cancel(id).await.unwrap();
    }
    outcome.unwrap();

    bad_token(&tb).await;
}

async fn scenario(rest: &SlurmRest, submitted: &mut Vec<JobId>) -> anyhow::Result<()> {
    // A script that exits 3: Finished with exit code 3 on a node.
    let id = rest
        .submit(&job("exit3", "#!/bin/sh\nexit 3\n", json!({})))
        .await?;
    submitted.push(id.clone());
    let done = wait_for(rest, &id, "ended", |s| {
        matches!(
            s.state,
            JobState::Finished | JobState::Failed | JobState::Unknown
        )
    })
    .await?;
    anyhow::ensure!(
        done.state == JobState::Finished && done.exit_code == Some(3),
        "{done:?}"
    );
    anyhow::ensure!(
        matches!(done.host.as_deref(), Some("node1" | "node2")),
        "{done:?}"
    );
    let fields = record(rest, &id).await?;
    anyhow::ensure!(
        fields.get("requeue") == Some(&json!(false)),
        "requeue: {:?}",
        fields.get("requeue")
    );

    // A long job: Running, then cancelled → Failed with CANCELLED.
    let id = rest
        .submit(&job("sleep", "#!/bin/sh\nsleep 60\n", json!({})))
        .await?;
    submitted.push(id.clone());
    let running = wait_for(rest, &id, "running", |s| s.state != JobState::Pending).await?;
    anyhow::ensure!(
        running.state == JobState::Running && running.host.is_some(),
        "{running:?}"
    );
    rest.cancel(&id).await?;
    let cancelled = wait_for(rest, &id, "cancelled", |s| s.state != JobState::Running).await?;
    anyhow::ensure!(cancelled.state == JobState::Failed, "{cancelled:?}");
    anyhow::ensure!(cancelled.raw_state.contains("CANCELLED"), "{cancelled:?}");
    // Cancelling again (already done) is fine.
    rest.cancel(&id).await?;

    // The held partition: Pending with a reason; extra params reach the job record.
    let extra = json!({"partition": "held", "cpus_per_task": 2});
    let id = rest
        .submit(&job("held", "#!/bin/sh\nexit 0\n", extra))
        .await?;
    submitted.push(id.clone());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let held = rest.status(&id).await?;
    eprintln!("job {id}: held: {held:?}");
    anyhow::ensure!(
        held.state == JobState::Pending && held.reason.is_some(),
        "{held:?}"
    );
    let fields = record(rest, &id).await?;
    // 22.05 shows `cpus_per_task: null` but counts the CPUs in `cpus`.
    let cpus = maybe_number(fields.get("cpus_per_task")).or(maybe_number(fields.get("cpus")));
    eprintln!(
        "job {id}: partition {:?}, cpus {cpus:?}",
        fields.get("partition")
    );
    anyhow::ensure!(
        cpus == Some(2),
        "cpus: {:?} {:?}",
        fields.get("cpus_per_task"),
        fields.get("cpus")
    );
    anyhow::ensure!(
        fields.get("partition") == Some(&json!("held")),
        "{:?}",
        fields.get("partition")
    );
    rest.cancel(&id).await?;
    let gone = wait_for(rest, &id, "cancelled", |s| s.state != JobState::Pending).await?;
    anyhow::ensure!(gone.state == JobState::Failed, "{gone:?}");

    // A job id Slurm never gave out.
    let unknown = rest.status(&JobId("999999".into())).await?;
    anyhow::ensure!(unknown.state == JobState::Unknown, "{unknown:?}");
    rest.cancel(&JobId("999999".into())).await?;
    Ok(())
}

/// A token with a forged signature: every way in says the token was rejected, never
/// quoting it.
async fn bad_token(tb: &Testbed) {
    let token = tb.token.trim();
    let (unsigned, _) = token.rsplit_once('.').expect("a JWT");
    let forged = format!("{unsigned}.Zm9yZ2VkLXNpZ25hdHVyZQ");
    let err = match SlurmRest::connect(&tb.host, tb.port, &forged, None).await {
        Err(err) => err,
        Ok(rest) => rest
            .ping()
            .await
            .expect_err("a forged token must not pass ping"),
    };
    let text = format!("{err:#} {err:?}");
    eprintln!("forged token: {err:#}");
    assert!(text.contains("slurm-jwt-token"), "{text}");
    assert!(!text.contains(&forged) && !text.contains(token), "{text}");
    assert!(!text.contains("Zm9yZ2VkLXNpZ25hdHVyZQ"), "{text}");
    // 22.05 gives only an ambiguous 500, which may be worth retrying; 24.11+ is certain.
    let e = err.downcast_ref::<Error>().expect("a REST error");
    assert!(matches!(e, Error::TokenRejected { .. }), "{e:?}");
}
