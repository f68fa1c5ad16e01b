//! Where one build's time goes, seen from both ends: the moments the hook's phases end
//! (submit, start seen, SSH ready, agent ready, input query, upload, realise, output fetch,
//! registration, goodbye) and the agent's own marks from its `Bye` (nsh-remote's
//! `timing.rs`). Shown at Nix's debug level (`-vvv`) as one line that `scripts/bench`
//! reads for its breakdown row.

use std::sync::Mutex;
use std::time::Instant;

use nsh_wire::agent_protocol::Mark;

/// The hook's marks of one build (all its jobs), and the agent's of the last job.
pub struct Phases {
    begun: Instant,
    marks: Mutex<Vec<(&'static str, Instant)>>,
    agent: Mutex<Option<AgentMarks>>,
}

/// The agent's marks and the hook's moment of the `Hello` it answered, which places the
/// agent's clock on the hook's (within one network delay).
struct AgentMarks {
    hello_sent: Instant,
    marks: Vec<Mark>,
}

/// The hook's mark the "job start → outputs registered" figure starts from.
pub const START_SEEN: &str = "start seen";
/// … and the one it ends at.
pub const REGISTERED: &str = "registration";

impl Default for Phases {
    fn default() -> Self {
        Phases::new()
    }
}

impl Phases {
    /// Begins the count (just before the job is submitted).
    pub fn new() -> Phases {
        Phases {
            begun: Instant::now(),
            marks: Mutex::new(Vec::new()),
            agent: Mutex::new(None),
        }
    }

    /// Records that `phase` ended now.
    pub fn mark(&self, phase: &'static str) {
        self.marks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((phase, Instant::now()));
    }

    /// The agent's marks, from its `Bye`; `hello_sent` is when nsh sent the `Hello` of
    /// that connection.
    pub fn agent(&self, hello_sent: Instant, marks: Vec<Mark>) {
        *self.agent.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(AgentMarks { hello_sent, marks });
    }

    /// Milliseconds from the last `from` mark to the last `to` mark after it.
    pub fn between(&self, from: &str, to: &str) -> Option<f64> {
        let marks = self.marks.lock().unwrap_or_else(|p| p.into_inner());
        let start = marks.iter().rposition(|(p, _)| *p == from)?;
        let end = marks.iter().skip(start).rfind(|(p, _)| *p == to)?;
        Some(ms(end.1.duration_since(marks[start].1)))
    }

    /// One line: each phase's milliseconds (since the previous mark), job start → outputs
    /// registered, and the agent's marks (milliseconds since it started).
    pub fn report(&self, job: &str) -> String {
        let marks = self.marks.lock().unwrap_or_else(|p| p.into_inner());
        let mut prev = self.begun;
        let mut line = format!("nsh: timing of job {job} (ms):");
        for (phase, at) in marks.iter() {
            line.push_str(&format!(
                " {}={:.1}",
                phase.replace(' ', "-"),
                ms(at.duration_since(prev))
            ));
            prev = *at;
        }
        drop(marks);
        if let Some(total) = self.between(START_SEEN, REGISTERED) {
            line.push_str(&format!("; start-to-registered={total:.1}"));
        }
        let agent = self.agent.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(a) = agent.as_ref() {
            line.push_str(&self.agent_part(a));
        }
        line
    }

    /// The agent's marks; where its `hello` mark allows, also how long before nsh saw the
    /// job run the agent started.
    fn agent_part(&self, a: &AgentMarks) -> String {
        let mut part = String::from("; agent (ms since it started");
        let hello = a.marks.iter().rfind(|m| m.phase == "hello");
        let seen = self
            .marks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .rfind(|(p, _)| *p == START_SEEN)
            .map(|(_, t)| *t);
        if let (Some(hello), Some(seen)) = (hello, seen) {
            // The agent started `hello.micros` before it read the Hello nsh sent.
            let agent_ms = hello.micros as f64 / 1000.0;
            let hook_ms = if a.hello_sent >= seen {
                ms(a.hello_sent.duration_since(seen))
            } else {
                -ms(seen.duration_since(a.hello_sent))
            };
            part.push_str(&format!(
                ", {:.1} ms before nsh saw the job run",
                agent_ms - hook_ms
            ));
        }
        part.push_str("):");
        for m in &a.marks {
            part.push_str(&format!(
                " {}={:.1}",
                m.phase.replace(' ', "-"),
                m.micros as f64 / 1000.0
            ));
        }
        part
    }
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn report_lists_phases_total_and_agent() {
        let p = Phases::new();
        p.mark("submit");
        p.mark(START_SEEN);
        std::thread::sleep(Duration::from_millis(5));
        let hello = Instant::now();
        p.mark("agent ready");
        p.mark(REGISTERED);
        p.agent(
            hello,
            vec![
                Mark {
                    phase: "hello".into(),
                    micros: 20_000,
                },
                Mark {
                    phase: "cleaned up".into(),
                    micros: 30_500,
                },
            ],
        );
        let r = p.report("42");
        assert!(r.starts_with("nsh: timing of job 42 (ms): submit="), "{r}");
        assert!(r.contains(" start-seen="), "{r}");
        assert!(r.contains(" agent-ready="), "{r}");
        let total = p.between(START_SEEN, REGISTERED).unwrap();
        assert!(total >= 5.0, "{r}");
        assert!(
            r.contains(&format!("start-to-registered={total:.1}")),
            "{r}"
        );
        assert!(r.contains(" hello=20.0 cleaned-up=30.5"), "{r}");
        // The agent read the Hello 20 ms after its start, sent ≥5 ms after the job was
        // seen running: it started at most 15 ms before.
        assert!(r.contains("ms before nsh saw the job run"), "{r}");
    }

    #[test]
    fn between_needs_both_marks_in_order() {
        let p = Phases::new();
        p.mark(REGISTERED);
        p.mark(START_SEEN);
        assert_eq!(p.between(START_SEEN, REGISTERED), None);
    }
}
