//! `qstat [-x] -f -F json ID` of OpenPBS and PBS Professional.
//!
//! ```plain
//! {"timestamp": N, "pbs_version": "23.06.06", "pbs_server": "vm",
//!  "Jobs": {"7.vm": {"job_state": "F", "substate": 92, "Exit_status": 0,
//!                    "exec_host": "vm/0", "Resource_List": {…}, …}}}
//! ```
//!
//! No `"Jobs"` key: the server does not have the job (exit 153, "Unknown Job Id"; or, with
//! `-x` and job history off, "PBS is not configured to maintain job history"). Only the
//! attributes' text matters here: strings as they are, numbers and booleans as written
//! (23.06 writes a numeric `Job_Name` as a number), nested objects left out.

use serde_json::Value;

use super::status::Attrs;

/// What the JSON says about the job `id`.
#[derive(Debug, PartialEq)]
pub enum Parsed {
    Job(Attrs),
    /// Valid JSON that lists no such job.
    NoJob,
}

pub fn parse(text: &str, id: &str) -> Result<Parsed, String> {
    let json: Value =
        serde_json::from_str(text).map_err(|e| format!("qstat's JSON does not parse ({e})"))?;
    let Some(top) = json.as_object() else {
        return Err("qstat's JSON is not an object".into());
    };
    let Some(jobs) = top.get("Jobs").and_then(Value::as_object) else {
        return Ok(Parsed::NoJob);
    };
    let job = if jobs.len() == 1 {
        jobs.values().next()
    } else {
        jobs.iter()
            .find(|(key, _)| super::same_job(key, id))
            .map(|(_, job)| job)
    };
    let Some(job) = job.and_then(Value::as_object) else {
        return Ok(Parsed::NoJob);
    };
    let attrs = job
        .iter()
        .filter_map(|(key, value)| {
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                Value::Null | Value::Array(_) | Value::Object(_) => return None,
            };
            Some((key.clone(), text))
        })
        .collect();
    Ok(Parsed::Job(attrs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::pbs::status::job_status;
    use crate::scheduler::{EndReason, JobState};

    fn status(text: &str, id: &str) -> crate::scheduler::JobStatus {
        match parse(text, id).unwrap() {
            Parsed::Job(attrs) => job_status(&attrs).unwrap(),
            Parsed::NoJob => panic!("no job {id} in {text}"),
        }
    }

    #[test]
    fn the_captured_ends() {
        let cases = [
            (
                include_str!("fixtures/openpbs-23.06-exit0.x-json.stdout"),
                JobState::Finished,
                EndReason::Exited,
                Some(0),
                None,
            ),
            (
                include_str!("fixtures/openpbs-23.06-exit7.x-json.stdout"),
                JobState::Finished,
                EndReason::Exited,
                Some(7),
                None,
            ),
            // The script's shell reports its child's SIGKILL as 128 + 9.
            (
                include_str!("fixtures/openpbs-23.06-kill9.x-json.stdout"),
                JobState::Finished,
                EndReason::Exited,
                Some(137),
                None,
            ),
            (
                include_str!("fixtures/openpbs-23.06-walltime.x-json.stdout"),
                JobState::Failed,
                EndReason::TimeLimit,
                None,
                None,
            ),
            (
                include_str!("fixtures/openpbs-23.06-held-deleted.x-json.stdout"),
                JobState::Failed,
                EndReason::Cancelled,
                None,
                None,
            ),
            (
                include_str!("fixtures/openpbs-23.06-deleted-by-root.x-json.stdout"),
                JobState::Failed,
                EndReason::Cancelled,
                Some(0),
                None,
            ),
            (
                include_str!("fixtures/openpbs-23.06-deleted-by-user.x-json.stdout"),
                JobState::Failed,
                EndReason::Cancelled,
                Some(143),
                None,
            ),
            // `qdel -W force`: the mom's own 256 + SIGKILL.
            (
                include_str!("fixtures/openpbs-23.06-force-deleted.x-json.stdout"),
                JobState::Failed,
                EndReason::Cancelled,
                None,
                Some(9),
            ),
        ];
        for (text, state, end, exit_code, signal) in cases {
            let s = status(text, "ignored: one job listed");
            assert_eq!(
                (s.state, s.end, s.exit_code, s.signal),
                (state, Some(end), exit_code, signal),
                "{s:?}"
            );
            assert!(!s.in_queue, "{s:?}");
        }
    }

    #[test]
    fn running_and_held() {
        let s = status(
            include_str!("fixtures/openpbs-23.06-running.x-json.stdout"),
            "21.pbshost",
        );
        assert_eq!(
            (s.state, s.host.as_deref()),
            (JobState::Running, Some("pbshost"))
        );
        assert!(s.in_queue && s.end.is_none());
        let s = status(
            include_str!("fixtures/openpbs-23.06-nohistory-running.plain-json.stdout"),
            "15.pbshost",
        );
        assert_eq!(s.state, JobState::Running);
        let s = status(
            include_str!("fixtures/openpbs-23.06-held.x-json.stdout"),
            "20",
        );
        assert_eq!((s.state, s.host), (JobState::Pending, None));
        assert!(s.in_queue);
    }

    #[test]
    fn no_job_listed() {
        for text in [
            include_str!("fixtures/openpbs-23.06-nohistory-unknown.x-json.stdout"),
            include_str!("fixtures/openpbs-23.06-nohistory-running.x-json.stdout"),
            include_str!("fixtures/openpbs-23.06-exit7.plain-json.stdout"),
        ] {
            assert_eq!(parse(text, "15.pbshost").unwrap(), Parsed::NoJob);
        }
    }

    #[test]
    fn types_of_free_text_fields_do_not_matter() {
        let text = r#"{"Jobs": {"3.vm": {"Job_Name": 1234, "job_state": "R", "substate": 42,
            "exec_host": "vm/0", "Rerunable": false, "Variable_List": {"A": 1},
            "comment": null, "x": [1]}, "4.vm": {"job_state": "Q"}}}"#;
        let Parsed::Job(attrs) = parse(text, "3.vm").unwrap() else {
            panic!("no job");
        };
        assert_eq!(attrs["Job_Name"], "1234");
        assert_eq!(attrs["Rerunable"], "false");
        assert!(!attrs.contains_key("comment"));
        assert_eq!(parse(text, "5.vm").unwrap(), Parsed::NoJob);
        assert!(parse("{\"Jobs\": ", "3.vm").is_err());
        assert!(parse("[]", "3.vm").is_err());
    }
}
