//! A token rejected mid-build, renewed from its source (credentials.rs), against the
//! scripted server of tests.rs.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::tests::{doc_2605, slurmrestd, token_for};
use super::{Error, SlurmRest};
use crate::scheduler::{ErrorKind, JobId, Scheduler};

/// Captured from slurmrestd 26.05.5 (v0.0.45) for `GET /slurm/v0.0.45/job/1` with a token
/// whose lifespan had run out: HTTP 511.
const EXPIRED_26_05: &str = r#"{"jobs":[],"meta":{"plugin":{"type":"openapi\/slurmctld","name":"Slurm OpenAPI slurmctld","data_parser":"data_parser\/v0.0.45","accounting_storage":""},"client":{"source":"10.197.7.1:6820(fd:11)","user":"root","group":"root"},"command":[],"slurm":{"version":{"major":"26","micro":"5","minor":"05"},"release":"26.05.5","cluster":"nshtb"}},"errors":[{"description":"Unable to query JobId=1","error_number":1007,"error":"Protocol authentication error","source":"_handle_job_get"}],"warnings":[]}"#;

/// A server that accepts only `good` and answers anything else as 26.05 answers an expired
/// token; cancels succeed.
async fn accepting_only(good: String) -> super::tests::Server {
    slurmrestd(doc_2605(), move |r| {
        if r.header("x-slurm-user-token") != Some(good.as_str()) {
            return Some((511, EXPIRED_26_05.into()));
        }
        (r.method == "DELETE").then(|| (200, r#"{"errors":[],"warnings":[]}"#.into()))
    })
    .await
}

#[tokio::test]
async fn a_rejected_token_is_renewed_from_its_source_and_retried_once() {
    let old = token_for("alice");
    let new = format!("{old}renewed");
    let server = accepting_only(new.clone()).await;
    let reads = Arc::new(AtomicUsize::new(0));
    let counter = reads.clone();
    let source = new.clone();
    let rest = SlurmRest::connect("127.0.0.1", server.port, &old, None)
        .await
        .unwrap()
        .with_token_source(Arc::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok(format!("SLURM_JWT={source}"))
        }));
    rest.cancel(&JobId("7".into())).await.unwrap();
    assert!(rest.take_renewal());
    assert!(!rest.take_renewal(), "a renewal is reported once");
    // The new token stays: no further rejection, no further read.
    rest.cancel(&JobId("8".into())).await.unwrap();
    assert_eq!(reads.load(Ordering::SeqCst), 1);
    let tokens: Vec<_> = server
        .requests()
        .iter()
        .filter(|r| r.method == "DELETE")
        .map(|r| r.header("x-slurm-user-token").unwrap_or("").to_owned())
        .collect();
    assert_eq!(tokens, [old.clone(), new.clone(), new]);
}

#[tokio::test]
async fn an_unchanged_token_is_an_auth_error_and_reread_at_most_every_few_seconds() {
    let old = token_for("alice");
    let server = accepting_only(format!("{old}never")).await;
    let reads = Arc::new(AtomicUsize::new(0));
    let counter = reads.clone();
    let same = old.clone();
    let rest = SlurmRest::connect("127.0.0.1", server.port, &old, None)
        .await
        .unwrap()
        .with_token_source(Arc::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok(same.clone())
        }));
    for id in ["1", "2", "3"] {
        let e = rest.status(&JobId(id.into())).await.unwrap_err();
        assert_eq!(rest.error_kind(&e), ErrorKind::Auth, "{e:#}");
        assert!(matches!(
            e.downcast_ref::<Error>(),
            Some(Error::TokenRejected { .. })
        ));
    }
    assert_eq!(
        reads.load(Ordering::SeqCst),
        1,
        "re-read within RENEW_PAUSE"
    );
    assert!(!rest.take_renewal());
}

/// Captured from slurmrestd 22.05.8 (v0.0.38) with a token whose lifespan had run out:
/// `GET …/job/1` and `DELETE …/job/1`, both HTTP 500.
const EXPIRED_22_05_GET: &str = r#"{"meta":{"plugin":{"type":"openapi\/v0.0.38","name":"Slurm OpenAPI v0.0.38"},"Slurm":{"version":{"major":22,"micro":8,"minor":5},"release":"22.05.8"}},"errors":[{"description":"Unable to find JobId=1","error_number":-1,"error":"Unspecified error","source":"slurm_load_job"}],"jobs":[]}"#;
const EXPIRED_22_05_DELETE: &str = r#"{"meta":{"plugin":{"type":"openapi\/v0.0.38","name":"Slurm OpenAPI v0.0.38"},"Slurm":{"version":{"major":22,"micro":8,"minor":5},"release":"22.05.8"}},"errors":[{"description":"unable to kill JobId=1 with signal 9: Zero Bytes were transmitted or received","error_number":5005,"error":"Zero Bytes were transmitted or received","source":"slurm_kill_job"}]}"#;

#[tokio::test]
async fn an_expired_token_on_22_05_is_a_probable_rejection_that_renews() {
    let old = token_for("alice");
    let new = format!("{old}renewed");
    let good = new.clone();
    let server = slurmrestd(super::tests::doc_2205(), move |r| {
        if r.header("x-slurm-user-token") == Some(good.as_str()) {
            return Some((200, r#"{"errors":[]}"#.into()));
        }
        let body = if r.method == "DELETE" {
            EXPIRED_22_05_DELETE
        } else {
            EXPIRED_22_05_GET
        };
        Some((500, body.into()))
    })
    .await;
    let rest = SlurmRest::connect("127.0.0.1", server.port, &old, None)
        .await
        .unwrap();
    for e in [
        rest.status(&JobId("1".into())).await.unwrap_err(),
        rest.cancel(&JobId("1".into())).await.unwrap_err(),
    ] {
        // Transient for the polls (a lost slurmctld answers alike), but a rejection.
        assert_eq!(rest.error_kind(&e), ErrorKind::Transient, "{e:#}");
        assert!(rest.rejects_credentials(&e), "{e:#}");
    }
    let source = new.clone();
    let rest = rest.with_token_source(Arc::new(move || Ok(source.clone())));
    rest.cancel(&JobId("1".into())).await.unwrap();
    assert!(rest.take_renewal());
}
