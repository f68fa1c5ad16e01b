//! One job's attributes (from `qstat -f`, text or JSON) as nsh's [`JobStatus`].
//!
//! ```plain
//! job_state  meaning                              nsh
//! Q H W T    queued, held, waiting, in transit    Pending
//! S U        suspended                            Pending (as Slurm's SUSPENDED)
//! R E B      running, exiting, array begun        Running
//! F X        finished (OpenPBS, job history on)   Finished / Failed by substate, Exit_status
//! C          completed (Torque, Slurm's wrappers) Finished / Failed by exit_status
//! M          moved to another server              Unknown (this server no longer has it)
//! ```
//!
//! The end of a job: success only for substate 92 (or no substate: Torque) with exit status
//! 0. Substate 91 is a `qdel`, whatever the exit status says (0 for a root job, the job
//! shell's 143 or the mom's 256+15 for a user's, 256+9 after `qdel -W force`). A negative
//! exit status means PBS could not run the job (OpenPBS's `JOB_EXEC_*` codes: -29 walltime,
//! -28 cput, -27/-26 memory, -20/-14/-11 a lost or failed sister mom, others a failed
//! start). The mom of OpenPBS and of Torque alike reports death by signal N as 256+N (its
//! wait status `WTERMSIG + 0x100`); 129–255 is the job shell's own 128+N, an ordinary exit
//! code. Slurm's Torque wrappers print no exit status at all: their `C` says only that the
//! job ended.

use std::collections::BTreeMap;

use crate::scheduler::{EndReason, JobState, JobStatus, check_host_name};

/// Attribute name → value, as qstat prints them (`Exit_status`, `exec_host`, …); nested
/// JSON objects are left out.
pub type Attrs = BTreeMap<String, String>;

/// Substates of a finished OpenPBS job.
const SUBSTATE_TERMINATED: i64 = 91;
const SUBSTATE_FINISHED: i64 = 92;

/// The mom's offset for death by a signal.
const SIGNAL_BASE: i64 = 256;

pub fn job_status(attrs: &Attrs) -> Result<JobStatus, String> {
    let state = attrs
        .get("job_state")
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .ok_or("the job has no job_state")?;
    let substate = number(attrs, "substate");
    let exit = number(attrs, "Exit_status").or(number(attrs, "exit_status"));
    let host = exec_host(attrs)?;
    let reason = attrs
        .get("comment")
        .map(|c| c.trim())
        .filter(|c| !c.is_empty())
        .map(printable);
    let mut status = JobStatus {
        state: JobState::Pending,
        raw_state: raw_state(state, substate, exit),
        host,
        exit_code: None,
        signal: None,
        reason,
        in_queue: true,
        end: None,
        waits_for_nodes: false,
    };
    match state {
        "Q" | "H" | "W" | "T" | "S" | "U" => {
            // The scheduler's verdict that no node can ever satisfy the request.
            status.waits_for_nodes = status
                .reason
                .as_deref()
                .is_some_and(|r| r.starts_with("Can Never Run"));
        }
        "R" | "E" | "B" => status.state = JobState::Running,
        "F" | "X" | "C" => {
            status.in_queue = false;
            ended(&mut status, substate, exit);
        }
        "M" => {
            status.state = JobState::Unknown;
            status.in_queue = false;
        }
        other => {
            return Err(format!(
                "job_state '{}' is not one nsh knows (Q, H, W, T, S, U, R, E, B, F, X, C, M)",
                printable(other)
            ));
        }
    }
    Ok(status)
}

/// Fills in how an ended job ended.
fn ended(status: &mut JobStatus, substate: Option<i64>, exit: Option<i64>) {
    let (exit_code, signal) = match exit {
        Some(n) if (0..SIGNAL_BASE).contains(&n) => (i32::try_from(n).ok(), None),
        Some(n) if n > SIGNAL_BASE && n < SIGNAL_BASE + 128 => {
            (None, i32::try_from(n - SIGNAL_BASE).ok())
        }
        _ => (None, None),
    };
    status.exit_code = exit_code;
    status.signal = signal;
    let (state, end) = if substate == Some(SUBSTATE_TERMINATED) {
        (JobState::Failed, EndReason::Cancelled)
    } else {
        match exit {
            None => (JobState::Failed, EndReason::Other),
            Some(-29 | -28) => (JobState::Failed, EndReason::TimeLimit),
            Some(-27 | -26) => (JobState::Failed, EndReason::OutOfMemory),
            Some(-20 | -14 | -11) => (JobState::Failed, EndReason::NodeFailed),
            Some(n) if n < 0 => (JobState::Failed, EndReason::LaunchFailed),
            Some(0) if substate.is_none_or(|s| s == SUBSTATE_FINISHED) => {
                (JobState::Finished, EndReason::Exited)
            }
            Some(0) => (JobState::Failed, EndReason::Other),
            Some(_) if exit_code.is_some() || signal.is_some() => {
                (JobState::Finished, EndReason::Exited)
            }
            Some(_) => (JobState::Failed, EndReason::Other),
        }
    };
    status.state = state;
    status.end = Some(end);
}

/// The first host of `exec_host` (`node1/0*2+node2/1` → `node1`), checked.
fn exec_host(attrs: &Attrs) -> Result<Option<String>, String> {
    let Some(value) = attrs.get("exec_host").map(|h| h.trim()) else {
        return Ok(None);
    };
    let first = value.split('+').next().unwrap_or_default();
    let host = first.split('/').next().unwrap_or_default().trim();
    if host.is_empty() {
        return Ok(None);
    }
    check_host_name(host).map_err(|why| format!("exec_host {why}"))?;
    Ok(Some(host.to_owned()))
}

fn number(attrs: &Attrs, key: &str) -> Option<i64> {
    attrs.get(key).and_then(|v| v.trim().parse().ok())
}

fn raw_state(state: &str, substate: Option<i64>, exit: Option<i64>) -> String {
    let mut raw = printable(state);
    if let Some(s) = substate {
        raw.push_str(&format!(" substate={s}"));
    }
    if let Some(e) = exit {
        raw.push_str(&format!(" exit_status={e}"));
    }
    raw
}

/// The cluster's words for a message: control characters escaped, cut to 300 characters.
pub fn printable(text: &str) -> String {
    text.chars()
        .take(300)
        .flat_map(char::escape_debug)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(pairs: &[(&str, &str)]) -> Attrs {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn end(pairs: &[(&str, &str)]) -> (JobState, Option<EndReason>, Option<i32>, Option<i32>) {
        let s = job_status(&attrs(pairs)).unwrap();
        (s.state, s.end, s.exit_code, s.signal)
    }

    #[test]
    fn the_exit_table() {
        use EndReason::*;
        use JobState::*;
        let f = |sub, exit| end(&[("job_state", "F"), ("substate", sub), ("Exit_status", exit)]);
        assert_eq!(f("92", "0"), (Finished, Some(Exited), Some(0), None));
        assert_eq!(f("93", "7"), (Finished, Some(Exited), Some(7), None));
        assert_eq!(f("93", "-29"), (Failed, Some(TimeLimit), None, None));
        assert_eq!(f("93", "-2"), (Failed, Some(LaunchFailed), None, None));
        assert_eq!(f("93", "-27"), (Failed, Some(OutOfMemory), None, None));
        assert_eq!(f("93", "-20"), (Failed, Some(NodeFailed), None, None));
        assert_eq!(f("91", "0"), (Failed, Some(Cancelled), Some(0), None));
        assert_eq!(f("91", "271"), (Failed, Some(Cancelled), None, Some(15)));
        assert_eq!(f("93", "265"), (Finished, Some(Exited), None, Some(9)));
        assert_eq!(f("93", "137"), (Finished, Some(Exited), Some(137), None));
        // A held job deleted: no Exit_status at all.
        assert_eq!(
            end(&[("job_state", "F"), ("substate", "91")]),
            (Failed, Some(Cancelled), None, None)
        );
        // Torque: no substate, lowercase exit_status.
        assert_eq!(
            end(&[("job_state", "C"), ("exit_status", "0")]),
            (Finished, Some(Exited), Some(0), None)
        );
        assert_eq!(
            end(&[("job_state", "C"), ("exit_status", "3")]),
            (Finished, Some(Exited), Some(3), None)
        );
        // Slurm's wrappers: no exit status.
        assert_eq!(
            end(&[("job_state", "C")]),
            (Failed, Some(Other), None, None)
        );
    }

    #[test]
    fn waiting_and_running() {
        for state in ["Q", "H", "W", "T", "S"] {
            let s =
                job_status(&attrs(&[("job_state", state), ("comment", "Not Running")])).unwrap();
            assert_eq!(s.state, JobState::Pending, "{state}");
            assert!(s.in_queue);
            assert_eq!(s.reason.as_deref(), Some("Not Running"));
        }
        let s = job_status(&attrs(&[
            ("job_state", "R"),
            ("exec_host", "nodeA/0*4+nodeB/1"),
        ]))
        .unwrap();
        assert_eq!(
            (s.state, s.host.as_deref()),
            (JobState::Running, Some("nodeA"))
        );
        assert_eq!(
            job_status(&attrs(&[("job_state", "M")])).unwrap().state,
            JobState::Unknown
        );
    }

    #[test]
    fn hostile_or_broken_attributes_are_errors() {
        assert!(
            job_status(&attrs(&[
                ("job_state", "R"),
                ("exec_host", "-oProxyCommand=x/0")
            ]))
            .is_err()
        );
        assert!(job_status(&attrs(&[("job_state", "Z")])).is_err());
        assert!(job_status(&attrs(&[])).is_err());
    }
}
