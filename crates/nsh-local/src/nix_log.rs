//! What the user sees: Nix's structured log messages on stderr and the build log on fd 4.
//!
//! After `# accept`, Nix drops plain stderr lines and shows only `@nix {json}` lines
//! (facts: nix-hook-protocol §4), so every message nsh prints goes through here. Before the
//! reply, plain lines are shown; [`Ui::plain`] is for that phase.

use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::Mutex;

/// Nix's verbosity levels (`lvlError` = 0 … `lvlVomit` = 7).
pub const LVL_ERROR: u8 = 0;
pub const LVL_WARN: u8 = 1;
pub const LVL_INFO: u8 = 3;

pub struct Ui {
    /// fd 4: the build log Nix stores and prints. Absent when run outside Nix (`nsh check`).
    build_log: Mutex<Option<std::fs::File>>,
    accepted: std::sync::atomic::AtomicBool,
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
        }
    }

    pub fn set_accepted(&self) {
        self.accepted
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn accepted(&self) -> bool {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// A message at `level`, shown the way Nix shows its own.
    pub fn msg(&self, level: u8, text: &str) {
        if self.accepted() {
            let line = serde_json::json!({"action": "msg", "level": level, "msg": text});
            emit(&format!("@nix {line}\n"));
        } else {
            emit(&format!("{text}\n"));
        }
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

/// Writes a whole line to stderr in one call, so concurrent writers never interleave.
pub fn emit(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(line.as_bytes());
    let _ = err.flush();
}
