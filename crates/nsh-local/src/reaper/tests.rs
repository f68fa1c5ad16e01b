//! The reaper against a scripted scheduler, on a paused clock (retry bounds are minutes).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Result, anyhow};
use tokio::time::Instant;

use super::{GONE_PATIENCE, MAX_PAUSE, PATIENCE, STUCK_AFTER, run};
use crate::scheduler::{JobId, JobSpec, JobState, JobStatus, Scheduler};

/// What the fake scheduler does and saw.
#[derive(Default)]
struct Script {
    /// Cancels that fail (slurmrestd down) before one succeeds.
    failing_cancels: u32,
    /// Status polls that still list the job.
    listed_polls: u32,
    /// Status polls that show it running (a cancel that did not take).
    running_polls: u32,
    cancels: Vec<Instant>,
    polls: u32,
}

#[derive(Clone)]
struct Fake(Arc<Mutex<Script>>);

impl Scheduler for Fake {
    async fn submit(&self, _: &JobSpec) -> Result<JobId> {
        Err(anyhow!("not used"))
    }
    async fn status(&self, _: &JobId) -> Result<JobStatus> {
        let mut s = self.0.lock().unwrap();
        s.polls += 1;
        let in_queue = s.polls <= s.listed_polls;
        let running = s.polls <= s.running_polls;
        Ok(JobStatus {
            state: if running {
                JobState::Running
            } else {
                JobState::Finished
            },
            raw_state: String::new(),
            host: None,
            exit_code: Some(0),
            signal: None,
            reason: None,
            in_queue,
            end: Some(crate::scheduler::EndReason::Exited),
            waits_for_nodes: false,
        })
    }
    async fn cancel(&self, _: &JobId) -> Result<()> {
        let mut s = self.0.lock().unwrap();
        s.cancels.push(Instant::now());
        if s.cancels.len() as u32 <= s.failing_cancels {
            return Err(anyhow!("no answer from slurmrestd"));
        }
        Ok(())
    }
    fn describe(&self) -> String {
        "fake".into()
    }
    fn name(&self) -> &'static str {
        "fake"
    }
    fn cpu_count_vars(&self) -> &'static str {
        "FAKE_CPUS"
    }
    fn error_kind(&self, _: &anyhow::Error) -> crate::scheduler::ErrorKind {
        crate::scheduler::ErrorKind::Transient
    }
}

fn paused() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
}

/// Runs the reaper with `verdict` on its pipe; `connect` fails `failing_connects` times.
fn reap(
    verdict: &[u8],
    holds_slot: bool,
    failing_connects: u32,
    script: Script,
) -> (Result<()>, Script, u32) {
    let rt = paused();
    let fake = Fake(Arc::new(Mutex::new(script)));
    let connects = Mutex::new(0u32);
    let result = run(&rt, verdict, "7", holds_slot, async || {
        let mut n = connects.lock().unwrap();
        *n += 1;
        if *n <= failing_connects {
            return Err(anyhow!("connection refused"));
        }
        Ok(fake.clone())
    });
    let n = *connects.lock().unwrap();
    let seen = std::mem::take(&mut *fake.0.lock().unwrap());
    (result, seen, n)
}

#[test]
fn done_without_a_slot_touches_nothing() {
    let (result, _, connects) = reap(b"done\n", false, 0, Script::default());
    assert!(result.is_ok());
    assert_eq!(connects, 0);
}

#[test]
fn retries_the_connection_and_the_cancel_until_slurmrestd_answers() {
    let rt_start = std::time::Instant::now();
    let script = Script {
        failing_cancels: 10,
        ..Script::default()
    };
    let (result, seen, connects) = reap(b"", false, 10, script);
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(connects, 11);
    assert_eq!(seen.cancels.len(), 11);
    // Paused clock: the test itself is instant, whatever the pauses add up to.
    assert!(rt_start.elapsed() < Duration::from_secs(10));
}

#[test]
fn cancels_within_max_pause_of_slurmrestd_coming_back() {
    let script = Script {
        failing_cancels: 30,
        ..Script::default()
    };
    let rt = paused();
    let fake = Fake(Arc::new(Mutex::new(script)));
    let result = rt.block_on(async {
        let start = Instant::now();
        let mut pause = super::Pause::default();
        while let Err(e) = fake.cancel(&JobId("7".into())).await {
            pause.wait_or(start + PATIENCE, e).await?;
        }
        anyhow::Ok(())
    });
    assert!(result.is_ok());
    let s = fake.0.lock().unwrap();
    assert_eq!(s.cancels.len(), 31);
    for w in s.cancels.windows(2) {
        assert!(
            w[1] - w[0] <= MAX_PAUSE + Duration::from_millis(5),
            "{:?}",
            w[1] - w[0]
        );
    }
}

#[test]
fn gives_up_after_its_patience() {
    let rt = paused();
    let start = rt.block_on(async { Instant::now() });
    let result = run(&rt, &b""[..], "7", false, async || -> Result<Fake> {
        Err(anyhow!("connection refused"))
    });
    let waited = rt.block_on(async { start.elapsed() });
    let err = result.unwrap_err();
    assert!(format!("{err:#}").contains("connection refused"));
    assert!(
        waited >= PATIENCE && waited <= PATIENCE + MAX_PAUSE * 2,
        "{waited:?}"
    );
}

#[test]
fn a_slot_is_held_until_the_job_leaves_the_queue() {
    let script = Script {
        listed_polls: 4,
        ..Script::default()
    };
    let (result, seen, _) = reap(b"done\n", true, 0, script);
    assert!(result.is_ok());
    assert_eq!(seen.polls, 5);
    assert!(seen.cancels.is_empty(), "a finished build is not cancelled");
}

#[test]
fn a_slot_is_let_go_after_gone_patience() {
    let script = Script {
        listed_polls: u32::MAX,
        ..Script::default()
    };
    let rt = paused();
    let fake = Fake(Arc::new(Mutex::new(script)));
    let start = rt.block_on(async { Instant::now() });
    rt.block_on(super::wait_until_gone(&fake, &JobId("7".into())));
    let waited = rt.block_on(async { start.elapsed() });
    assert!(
        waited >= GONE_PATIENCE && waited <= GONE_PATIENCE + MAX_PAUSE * 2,
        "{waited:?}"
    );
}

#[test]
fn a_cancelled_job_that_keeps_running_is_cancelled_again_once() {
    let script = Script {
        running_polls: u32::MAX,
        ..Script::default()
    };
    let rt = paused();
    let start = rt.block_on(async { Instant::now() });
    let fake = Fake(Arc::new(Mutex::new(script)));
    let f = fake.clone();
    let result = run(&rt, &b""[..], "7", false, async || Ok(f.clone()));
    assert!(result.is_ok());
    let s = fake.0.lock().unwrap();
    assert_eq!(
        s.cancels.len(),
        2,
        "one cancel, then one more (forced for PBS)"
    );
    let gap = s.cancels[1] - s.cancels[0];
    assert!(
        gap >= STUCK_AFTER && gap <= STUCK_AFTER + MAX_PAUSE * 2,
        "{gap:?}"
    );
    assert!(s.cancels[0] - start < Duration::from_secs(1));
}

#[test]
fn a_cancelled_job_that_ends_is_not_cancelled_again() {
    let (result, seen, _) = reap(b"", false, 0, Script::default());
    assert!(result.is_ok());
    assert_eq!(seen.cancels.len(), 1);
    assert_eq!(seen.polls, 1);
}
