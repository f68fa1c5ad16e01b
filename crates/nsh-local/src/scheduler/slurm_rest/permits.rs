//! A bound on this host's connections to slurmrestd, shared by all of nsh's processes.
//!
//! slurmrestd serves at most `--max-connections` clients at once (124 by default on the
//! testbed's releases) and Nix may run hundreds of hooks, each with its own client, plus
//! their reapers. Every request holds one of [`MAX_CONNECTIONS`] flock'd permit files in
//! the runtime dir (queue_slots.rs `try_take`) while its connection is open, and clients
//! keep no idle connection (`pool_max_idle_per_host(0)` in slurm_rest.rs), so this host
//! never has more connections open than permits. A lock dies with its process, so a
//! killed hook frees its permit.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::time::Instant;

/// Connections to slurmrestd this host opens at most: a quarter of slurmrestd's default
/// 124, leaving the rest to other users and tools of the cluster.
pub const MAX_CONNECTIONS: u32 = 32;
/// Pause between two tries while every permit is held: requests take milliseconds.
const RETRY: Duration = Duration::from_millis(10);

/// Where the permit files live; `None` = no bound (tests without a runtime dir).
#[derive(Debug, Clone)]
pub(super) struct Permits {
    dir: Option<PathBuf>,
}

/// A held permit: the connection may stay open while this lives.
pub(super) struct Permit {
    _file: Option<File>,
}

impl Permits {
    pub(super) fn new(runtime_dir: Option<&Path>) -> Permits {
        Permits {
            dir: runtime_dir.map(|d| d.join("slurmrestd-connections")),
        }
    }

    /// Waits for a free permit until `deadline`; `Err` says why there is none.
    pub(super) async fn acquire(&self, deadline: Instant) -> Result<Permit, String> {
        let Some(dir) = &self.dir else {
            return Ok(Permit { _file: None });
        };
        loop {
            // A non-blocking flock on a local file: microseconds, no need for a thread.
            match crate::queue_slots::try_take(dir, MAX_CONNECTIONS) {
                Ok(Some(file)) => return Ok(Permit { _file: Some(file) }),
                Ok(None) => {}
                Err(e) => return Err(format!("{e:#}")),
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "all {MAX_CONNECTIONS} slurmrestd connections of this host stayed busy \
                     (permits in {})",
                    dir.display()
                ));
            }
            // Jitter, so waiting processes do not retry in lockstep.
            let jitter = Duration::from_millis(u64::from(rand::random::<u8>() % 10));
            tokio::time::sleep(RETRY + jitter).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{MAX_CONNECTIONS, Permits};
    use std::time::Duration;
    use tokio::time::Instant;

    #[tokio::test]
    async fn at_most_max_connections_permits_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let permits = Permits::new(Some(dir.path()));
        let soon = || Instant::now() + Duration::from_millis(50);
        let mut held = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            held.push(permits.acquire(soon()).await.unwrap());
        }
        let err = permits.acquire(soon()).await.err().unwrap();
        assert!(err.contains("stayed busy"), "{err}");
        held.pop();
        assert!(permits.acquire(soon()).await.is_ok());
    }

    #[tokio::test]
    async fn a_waiting_request_gets_the_next_free_permit() {
        let dir = tempfile::tempdir().unwrap();
        let permits = Permits::new(Some(dir.path()));
        let far = Instant::now() + Duration::from_secs(10);
        let mut held = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            held.push(permits.acquire(far).await.unwrap());
        }
        let release = async {
            tokio::time::sleep(Duration::from_millis(30)).await;
            held.clear();
        };
        let (got, ()) = tokio::join!(permits.acquire(far), release);
        assert!(got.is_ok());
    }

    #[tokio::test]
    async fn no_runtime_dir_no_bound() {
        let permits = Permits::new(None);
        assert!(permits.acquire(Instant::now()).await.is_ok());
    }
}
