//! What the user sees: Nix's structured log messages on stderr and the build log on fd 4.
//!
//! After `# accept`, Nix drops plain stderr lines and shows only `@nix {json}` lines, so
//! every message nsh prints goes through here as one. Before the reply Nix shows plain
//! lines too, but only on its own stderr (the daemon's, under nix-daemon); tracing's
//! diagnostics ([`PlainStderr`]) go that way.

use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub use nsh_wire::log_message::{
    ACT_COPY_PATH, ACT_COPY_PATHS, ACT_UNKNOWN, LVL_DEBUG, LVL_ERROR, LVL_INFO, LVL_TALKATIVE,
    LVL_WARN,
};
use nsh_wire::log_message::{LogMessage, RES_PROGRESS, RES_SET_EXPECTED};

/// Shortest gap between two progress messages of one activity.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

pub struct Ui {
    /// fd 4: the build log Nix stores and prints. Absent when run outside Nix (`nsh check`).
    build_log: Mutex<Option<std::fs::File>>,
    accepted: std::sync::atomic::AtomicBool,
    next_activity: AtomicU64,
}

impl Ui {
    /// Takes ownership of fd 4 if it is open.
    pub fn from_hook_fds() -> Ui {
        // SAFETY: fcntl(F_GETFD) only queries; fd 4 is ours to own if open (Nix passes it).
        let open = unsafe { libc::fcntl(4, libc::F_GETFD) } != -1;
        let file = open.then(|| {
            // SAFETY: fd 4 is open and nothing else in this process owns it.
            std::fs::File::from(unsafe { OwnedFd::from_raw_fd(4) })
        });
        Ui {
            build_log: Mutex::new(file),
            accepted: Default::default(),
            next_activity: AtomicU64::new(1),
        }
    }

    pub fn set_accepted(&self) {
        self.accepted
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn accepted(&self) -> bool {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// A message at `level`, shown the way Nix shows its own. Always an `@nix` message, also
    /// before the reply: Nix copies a plain line then to its own stderr, which under
    /// nix-daemon is the daemon's journal, while an `@nix` message goes through Nix's logger
    /// to the client that runs the build (every Nix from 2.8 on parses them there).
    pub fn msg(&self, level: u8, text: &str) {
        emit(
            &LogMessage::Msg {
                level,
                msg: text.to_owned(),
            }
            .to_line(),
        );
    }

    pub fn error(&self, text: &str) {
        self.msg(LVL_ERROR, &format!("error: {text}"));
    }

    pub fn warn(&self, text: &str) {
        self.msg(LVL_WARN, &format!("warning: {text}"));
    }

    pub fn info(&self, text: &str) {
        self.msg(LVL_INFO, text);
    }

    /// Starts an activity Nix shows in its progress display (`nix build`), nested under the
    /// build; Nix re-creates it from these lines and ends it with [`Activity`]'s drop. Only
    /// after `# accept`: before it, Nix reads plain lines. `fields` must have the shape Nix
    /// expects for `kind` (e.g. copy-path: path, from, to).
    pub fn activity(
        &self,
        level: u8,
        kind: u64,
        text: &str,
        fields: serde_json::Value,
    ) -> Option<Activity> {
        if !self.accepted() {
            return None;
        }
        let id = self.next_activity.fetch_add(1, Ordering::Relaxed);
        emit(
            &LogMessage::Start {
                id,
                level,
                kind,
                text: text.to_owned(),
                fields,
                parent: 0,
            }
            .to_line(),
        );
        Some(Activity {
            id,
            last_progress: Mutex::new(None),
        })
    }

    /// Raw build-log bytes: into Nix's log file and its terminal output.
    pub fn build_log(&self, bytes: &[u8]) {
        if let Ok(mut guard) = self.build_log.lock()
            && let Some(f) = guard.as_mut()
        {
            // A failed write to fd 4 means Nix is gone; nothing useful to do about it.
            let _ = f.write_all(bytes);
        }
    }
}

/// A running activity; dropping it tells Nix it stopped.
pub struct Activity {
    id: u64,
    last_progress: Mutex<Option<Instant>>,
}

impl Activity {
    fn result(&self, kind: u64, fields: serde_json::Value) {
        emit(
            &LogMessage::Result {
                id: self.id,
                kind,
                fields,
            }
            .to_line(),
        );
    }

    /// `done` of `expected` (bytes or items); sent at most every [`PROGRESS_EVERY`], and
    /// always when `done` reaches `expected`.
    pub fn progress(&self, done: u64, expected: u64) {
        let now = Instant::now();
        if let Ok(mut last) = self.last_progress.lock() {
            let due = last.is_none_or(|t| now.duration_since(t) >= PROGRESS_EVERY);
            if !due && done < expected {
                return;
            }
            *last = Some(now);
        }
        self.result(RES_PROGRESS, serde_json::json!([done, expected, 0, 0]));
    }

    /// How much of `kind` this activity's children will do (Nix sums it in its totals).
    pub fn set_expected(&self, kind: u64, expected: u64) {
        self.result(RES_SET_EXPECTED, serde_json::json!([kind, expected]));
    }
}

impl Drop for Activity {
    fn drop(&mut self) {
        emit(&LogMessage::Stop { id: self.id }.to_line());
    }
}

/// `text` as plain stderr lines that Nix cannot mistake for anything but text. Before our
/// reply Nix reads a line starting with `# ` as the hook's reply and one starting with
/// `@nix ` as a structured log message; messages quote the scheduler, the cluster and config
/// files, so such lines are indented and control characters other than tab shown as `?`.
pub fn plain_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 1);
    for line in text.split('\n') {
        if line.starts_with('#') || line.starts_with("@nix") {
            out.push_str("  ");
        }
        out.extend(
            line.chars()
                .map(|c| if c.is_control() && c != '\t' { '?' } else { c }),
        );
        out.push('\n');
    }
    out
}

/// A writer for `NSH_LOG`'s tracing output: one event is collected, then written as
/// [`plain_line`]s, so debug output quoting the cluster cannot pose as a reply either.
#[derive(Default)]
pub struct PlainStderr(Vec<u8>);

impl Write for PlainStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for PlainStderr {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            let text = String::from_utf8_lossy(&self.0);
            emit(&plain_line(text.strip_suffix('\n').unwrap_or(&text)));
        }
    }
}

/// Writes a whole line to stderr in one call, so concurrent writers never interleave.
pub fn emit(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(line.as_bytes());
    let _ = err.flush();
}

#[cfg(test)]
mod tests {
    use super::plain_line;

    #[test]
    fn plain_lines_cannot_pose_as_replies_or_log_messages() {
        let text =
            "error: slurmrestd said:\n# accept\n#decline\n@nix {\"action\":\"msg\"}\nok\r# x";
        let out = plain_line(text);
        for line in out.lines() {
            assert!(
                !line.starts_with('#') && !line.starts_with("@nix"),
                "{line:?}"
            );
        }
        assert_eq!(
            out,
            "error: slurmrestd said:\n  # accept\n  #decline\n  @nix {\"action\":\"msg\"}\nok?# x\n"
        );
        assert_eq!(plain_line("nsh: fine"), "nsh: fine\n");
    }
}
