//! Where the agent's time goes: the moments its phases end, counted from the agent's start
//! (the job's start, give or take the job script's few milliseconds). They go to the client
//! in `Bye` and into `job.log`; nsh shows them next to its own (`nsh-local`'s `phases.rs`).

use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use nsh_wire::agent_protocol::Mark;

/// At most this many marks are kept: a client that reconnects over and over must not grow
/// the list without bound.
const MAX_MARKS: usize = 64;

fn start() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

fn marks() -> &'static Mutex<Vec<Mark>> {
    static MARKS: Mutex<Vec<Mark>> = Mutex::new(Vec::new());
    &MARKS
}

/// Fixes the agent's start; the first thing `serve` does.
pub fn begin() {
    let _ = start();
}

/// Records that `phase` ended now.
pub fn mark(phase: &str) {
    let micros = u64::try_from(start().elapsed().as_micros()).unwrap_or(u64::MAX);
    let mut all = marks().lock().unwrap_or_else(|p| p.into_inner());
    if all.len() < MAX_MARKS {
        all.push(Mark {
            phase: phase.to_owned(),
            micros,
        });
    }
}

/// The marks so far, in the order they were made.
pub fn all() -> Vec<Mark> {
    marks().lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// `phase=ms` pairs for `job.log`.
pub fn summary(marks: &[Mark]) -> String {
    marks
        .iter()
        .map(|m| format!("{}={:.1}", m.phase, m.micros as f64 / 1000.0))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_are_ordered_and_bounded() {
        begin();
        for _ in 0..MAX_MARKS + 5 {
            mark("x");
        }
        let all = all();
        assert_eq!(all.len(), MAX_MARKS);
        assert!(all.windows(2).all(|w| w[0].micros <= w[1].micros));
        assert!(summary(&all[..2]).starts_with("x="));
    }
}
