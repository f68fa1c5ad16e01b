//! One job's record from `scontrol show job -o ID` (22.05 → 26.05: one line of
//! `Key=value` pairs) as nsh's [`JobStatus`], through [`slurm_state`].
//!
//! A value may hold spaces (`Reason=ReqNodeNotAvail, UnavailableNodes:node1`): a word
//! without `=` belongs to the value before it. Text the job's submitter chose (`Command`,
//! `WorkDir`, `SubmitLine`, `Comment`…) comes after every field nsh reads, so reading stops
//! there and the first occurrence of a key wins: nothing a derivation wrote can pose as
//! `JobState=` or `BatchHost=`.

use std::collections::BTreeMap;

use crate::scheduler::commands::printable;
use crate::scheduler::slurm_state::{self, Facts};
use crate::scheduler::{JobStatus, check_host_name};

/// Keys whose values are free text chosen by whoever submitted: reading stops at the first.
const FREE_TEXT: &[&str] = &[
    "Command",
    "WorkDir",
    "SubmitLine",
    "Comment",
    "AdminComment",
    "SystemComment",
    "StdErr",
    "StdIn",
    "StdOut",
];

/// The job's fields up to the first free-text one; `None` if `line` is not job `id`'s.
pub fn fields<'a>(line: &'a str, id: &str) -> Option<BTreeMap<&'a str, String>> {
    let mut map: BTreeMap<&str, String> = BTreeMap::new();
    let mut current: Option<&str> = None;
    for word in line.split(' ').filter(|w| !w.is_empty()) {
        match word.split_once('=') {
            Some((key, value)) if is_key(key) => {
                if FREE_TEXT.contains(&key) {
                    break;
                }
                if map.contains_key(key) {
                    current = None;
                    continue;
                }
                map.insert(key, value.to_owned());
                current = Some(key);
            }
            _ => {
                if let Some(value) = current.and_then(|k| map.get_mut(k)) {
                    value.push(' ');
                    value.push_str(word);
                }
            }
        }
    }
    (map.get("JobId").map(String::as_str) == Some(id)).then_some(map)
}

fn is_key(key: &str) -> bool {
    key.starts_with(|c: char| c.is_ascii_alphabetic())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b':' | b'/' | b'.'))
}

/// `scontrol show job -o ID`'s stdout as job `id`'s status.
pub fn job_status(stdout: &str, id: &str) -> Result<JobStatus, String> {
    let Some(map) = stdout.lines().find_map(|l| fields(l.trim_end(), id)) else {
        return Err(format!(
            "no line for job {id} (JobId={id} …) in: {}",
            printable(stdout)
        ));
    };
    let words: Vec<String> = map
        .get("JobState")
        .map(|s| {
            s.split([',', ' ', '+'])
                .filter(|w| !w.is_empty())
                .map(str::to_ascii_uppercase)
                .collect()
        })
        .unwrap_or_default();
    if words.is_empty() {
        return Err(format!("job {id}'s record has no JobState"));
    }
    let (exit_code, signal) = exit_code(map.get("ExitCode").map(String::as_str));
    // Placeholders and (for NodeList) node ranges are left to slurm_state, which never
    // takes them for a host; any single name is checked here.
    let host = |key: &str, ranges: bool| -> Result<Option<&str>, String> {
        let Some(v) = map.get(key).map(|v| v.trim()) else {
            return Ok(None);
        };
        if v.is_empty() || v == "(null)" || (ranges && v.contains(['[', ',', '('])) {
            return Ok(Some(v));
        }
        check_host_name(v).map_err(|why| format!("job {id}'s {key}: {why}"))?;
        Ok(Some(v))
    };
    let batch_host = host("BatchHost", false)?;
    let nodes = host("NodeList", true)?;
    let reason = map.get("Reason").map(|r| printable(r));
    Ok(slurm_state::job_status(&Facts {
        words: &words,
        exit_code,
        signal,
        batch_host,
        nodes,
        reason: reason.as_deref(),
    }))
}

/// `ExitCode=CODE:SIGNAL`, a signal of 0 meaning none.
fn exit_code(text: Option<&str>) -> (Option<i32>, Option<i32>) {
    let Some((code, signal)) = text.and_then(|t| t.trim().split_once(':')) else {
        return (None, None);
    };
    let code = code.parse::<i32>().ok();
    let signal = signal.parse::<i32>().ok().filter(|&s| s != 0);
    (code, signal)
}

/// `Invalid job id specified`: the job never existed or was purged after MinJobAge.
pub fn is_unknown_job(stderr: &str) -> bool {
    stderr.contains("Invalid job id specified")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spaces_join_and_free_text_cannot_pose_as_fields() {
        let line = "JobId=7 JobName=nsh-x JobState=PENDING Reason=ReqNodeNotAvail, \
                    UnavailableNodes:node1 Dependency=(null) ExitCode=0:0 NodeList= \
                    Command=/x BatchHost=evil JobState=COMPLETED";
        let map = fields(line, "7").unwrap();
        assert_eq!(map["Reason"], "ReqNodeNotAvail, UnavailableNodes:node1");
        assert_eq!(map["JobState"], "PENDING");
        assert!(!map.contains_key("BatchHost"));
        assert!(fields(line, "8").is_none());
        let s = job_status(line, "7").unwrap();
        assert!(s.waits_for_nodes && s.host.is_none(), "{s:?}");
    }

    #[test]
    fn hostile_host_names_are_refused() {
        let line =
            "JobId=7 JobState=RUNNING ExitCode=0:0 NodeList=node1 BatchHost=-oProxyCommand=x";
        let err = job_status(line, "7").unwrap_err();
        assert!(err.contains("BatchHost") && err.contains("job 7"), "{err}");
    }

    #[test]
    fn exit_codes() {
        assert_eq!(exit_code(Some("3:0")), (Some(3), None));
        assert_eq!(exit_code(Some("0:15")), (Some(0), Some(15)));
        assert_eq!(exit_code(Some("x")), (None, None));
        assert_eq!(exit_code(None), (None, None));
    }
}
