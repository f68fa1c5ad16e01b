//! Process groups of the agent's children, so that a lease expiry, a Slurm cancel or a
//! goodbye can stop all of them (the realise and whatever it spawned), not just the leader.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::log::log;

/// How long children get between SIGTERM and SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(5);

/// The process groups currently running (each child leads its own).
#[derive(Default)]
pub struct Children {
    groups: Mutex<BTreeSet<i32>>,
}

impl Children {
    fn set(&self) -> std::sync::MutexGuard<'_, BTreeSet<i32>> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// SIGTERM to every group, then SIGKILL to those still there after [`KILL_GRACE`].
    pub fn terminate_all(&self) {
        let groups: Vec<i32> = self.set().iter().copied().collect();
        if groups.is_empty() {
            return;
        }
        log!("terminating process groups {groups:?}");
        for &g in &groups {
            signal_group(g, libc::SIGTERM);
        }
        let deadline = Instant::now() + KILL_GRACE;
        // Short steps: a goodbye waits here for the children, which mostly end at once.
        while Instant::now() < deadline && groups.iter().any(|&g| group_alive(g)) {
            thread::sleep(Duration::from_millis(2));
        }
        for &g in &groups {
            if group_alive(g) {
                log!("process group {g} survived SIGTERM; sending SIGKILL");
                signal_group(g, libc::SIGKILL);
            }
        }
    }
}

/// Keeps a child's group registered while it runs.
pub struct ChildGuard {
    children: Arc<Children>,
    pgid: i32,
}

impl ChildGuard {
    pub fn new(children: &Arc<Children>, pgid: i32) -> ChildGuard {
        children.set().insert(pgid);
        ChildGuard {
            children: Arc::clone(children),
            pgid,
        }
    }

    pub fn pgid(&self) -> i32 {
        self.pgid
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.children.set().remove(&self.pgid);
    }
}

pub fn signal_group(pgid: i32, sig: i32) {
    if pgid <= 1 {
        return;
    }
    // SAFETY: kill(2) with a negative pid signals a process group; no memory is involved.
    unsafe {
        libc::kill(-pgid, sig);
    }
}

fn group_alive(pgid: i32) -> bool {
    // SAFETY: signal 0 only checks existence.
    pgid > 1 && unsafe { libc::kill(-pgid, 0) } == 0
}
