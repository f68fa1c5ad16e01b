//! Submissions refused for a limit (MaxSubmitJobs, QOS, MaxJobCount) are told apart from
//! other refusals, so the driver postpones them.
//!
//! The testbed has no accounting database (AccountingStorageType=accounting_storage/none in
//! scripts/lib/testbed-rootfs.sh), so slurmctld cannot enforce such a limit there. The
//! bodies below are the captured shapes of real submit refusals (`submit_errors_quote_the_server`
//! for 26.05, `rejected_token_on_22_05_is_a_probable_rejection` for 22.05) with the
//! number and text slurm_errno.c gives `ESLURM_ACCOUNTING_POLICY` and friends.

use super::tests::{doc_2205, doc_2605, slurmrestd, spec, token_for};
use super::{Error, SlurmRest};
use crate::scheduler::{ErrorKind, Scheduler};

fn refused_for_limit(err: &anyhow::Error) -> bool {
    err.chain()
        .find_map(|c| c.downcast_ref::<Error>().map(Error::kind))
        == Some(ErrorKind::Refused)
}

const POLICY_2605: &str = r#"{"errors":[{"description":"Batch job submission failed","error_number":2050,"error":"Job violates accounting/QOS policy (job submit limit, user's size and/or time limits)","source":"slurm_submit_batch_job()"}],"warnings":[]}"#;
const POLICY_2205: &str = r#"{"meta":{},"errors":[{"error_code":2050,"error":"Job violates accounting/QOS policy (job submit limit, user's size and/or time limits)"}]}"#;
const RECORD_2605: &str = r#"{"errors":[{"description":"Batch job submission failed","error_number":2007,"error":"Unable to create job record, try again","source":"slurm_submit_batch_job()"}],"warnings":[]}"#;
const ENV_2605: &str = r#"{"errors":[{"description":"Batch job submission failed","error_number":2127,"error":"Environment is missing in job","source":"slurm_submit_batch_job()"}],"warnings":[]}"#;

async fn submit_answered(doc: serde_json::Value, status: u16, body: &'static str) -> anyhow::Error {
    let server = slurmrestd(doc, move |r| {
        (r.method == "POST" && r.path.ends_with("/job/submit")).then(|| (status, body.into()))
    })
    .await;
    let rest = SlurmRest::connect("127.0.0.1", server.port, &token_for("alice"), None)
        .await
        .unwrap();
    rest.submit(&spec()).await.unwrap_err()
}

#[tokio::test]
async fn limit_refusals_postpone() {
    for (doc, status, body) in [
        (doc_2605(), 500, POLICY_2605),
        (doc_2205(), 500, POLICY_2205),
        (doc_2605(), 500, RECORD_2605),
        // A refusal listed next to HTTP 200 and no job id.
        (doc_2605(), 200, POLICY_2605),
    ] {
        let err = submit_answered(doc, status, body).await;
        assert!(refused_for_limit(&err), "{err:#}");
        let e = err.downcast_ref::<Error>().unwrap();
        assert!(e.is_limit() && !e.is_transient(), "{e}");
        let text = format!("{err:#}");
        assert!(text.contains("refused the job for a limit"), "{text}");
        assert!(
            text.contains("postpones") && text.contains("max-queued-jobs"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn other_refusals_do_not_postpone() {
    let err = submit_answered(doc_2605(), 422, ENV_2605).await;
    assert!(!refused_for_limit(&err), "{err:#}");
    let err = submit_answered(doc_2605(), 502, "Bad Gateway").await;
    assert!(!refused_for_limit(&err), "{err:#}");
    // Not a limit: a wrong account or QOS stays wrong however long nsh waits.
    let invalid_qos = r#"{"errors":[{"error_number":2066,"error":"Invalid qos specification"}]}"#;
    let err = submit_answered(doc_2605(), 500, invalid_qos).await;
    assert!(!refused_for_limit(&err), "{err:#}");
}
