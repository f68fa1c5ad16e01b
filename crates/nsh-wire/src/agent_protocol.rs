//! The messages nsh and its agent exchange over the SSH-forwarded channel.
//!
//! One connection serves one build. The client (nsh on the submit host) speaks first with
//! [`ClientMsg::Hello`]; the agent answers [`AgentMsg::Hello`]. Bulk data (the export stream of
//! missing inputs, output NARs) travels as chunks of one zstd stream per transfer, so a
//! chunk boundary means nothing to the decoder. Every message is one frame (see
//! [`crate::codec`]).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Bumped on any incompatible change to the messages below. Both sides refuse a mismatch
/// with an error that names both versions, rather than misreading frames.
/// 3: `ImportAck` (flow control of the upload), `Waiting`, `lease_ms` in the agent's `Hello`.
/// 4: `cores` and `keep_failed` in `BuildRequest`, `kept_dir` in `BuildResult`.
/// 5: `timings` in `Bye`.
pub const PROTOCOL_VERSION: u32 = 5;

/// The job script sets this to the names (space-separated) of the job environment's
/// variables that may carry the CPUs the scheduler allocated to the job on its node, most
/// specific first; the agent reads the first one set (see `nsh-remote`'s `job_cpus`).
pub const JOB_CPUS_VARS_ENV: &str = "NSH_JOB_CPUS_VARS";

/// The agent's lease: with no frame from a client for this long, it ends its build and job
/// (nsh is gone, or cut off past reconnecting). The job script passes it to `serve`.
pub const LEASE: Duration = Duration::from_secs(60);

/// How often nsh pings at most; a quarter of a shorter lease (a test agent's) if less, so
/// three pings in a row can be late before the lease runs out.
pub const KEEPALIVE: Duration = Duration::from_secs(15);

/// The keepalive period for an agent whose lease is `lease`.
pub fn keepalive_for(lease: Duration) -> Duration {
    let quarter = lease / 4;
    if quarter < KEEPALIVE {
        quarter.max(Duration::from_millis(100))
    } else {
        KEEPALIVE
    }
}

/// How long nsh tries to reach a lost agent again: well inside its lease, so the agent is
/// still there if the network comes back.
pub const fn reconnect_window(lease: Duration) -> Duration {
    Duration::from_millis(lease.as_millis() as u64 * 3 / 4)
}

/// Import messages (`ImportPath`, `ImportChunk`) nsh may have sent that the agent has not
/// acknowledged with `ImportAck`. The agent's queue holds this many and no more, so its
/// reader never waits on a busy worker and always reads the next `Ping` at once. At most
/// `IMPORT_WINDOW * CHUNK_SIZE` (16 MiB) in flight: more than a fast link's round trip.
pub const IMPORT_WINDOW: u64 = 16;

/// Largest data chunk either side sends; the codec refuses frames much larger than this.
pub const CHUNK_SIZE: usize = 1 << 20;

/// Messages from nsh (the client) to the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientMsg {
    /// First message on every connection. `token` is the per-job secret placed in the job
    /// script; the agent closes connections that do not know it.
    Hello { version: u32, token: String },
    /// Which of these store paths does the remote store lack? Answered by `Missing`.
    QueryMissing { paths: Vec<String> },
    /// The next missing path to add to the remote store. Its NAR (exactly `nar_size` bytes)
    /// follows the NAR of the path announced before it in the decompressed import stream.
    /// Sent before the first byte of its NAR; paths come in dependency order.
    ImportPath(PathInfo),
    /// A piece of the zstd-compressed stream of the announced paths' NARs, back to back.
    ImportChunk(Vec<u8>),
    /// End of the import stream; the agent answers `Imported` or `Error`.
    ImportEnd,
    /// Realise the derivation (its closure is now in the remote store).
    Build(BuildRequest),
    /// Send the NAR of this output (after `BuildDone`): answered by `Output`, chunks, `NarEnd`.
    FetchOutput { path: String },
    /// The build is over for the client; clean up (and collect garbage if asked), then exit.
    Goodbye { collect_garbage: bool },
    /// Keeps the agent's lease alive while nothing else is said.
    Ping,
}

/// What to build and with which of Nix's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildRequest {
    pub drv_path: String,
    /// Output names Nix wants.
    pub outputs: Vec<String>,
    /// `--option NAME VALUE` pairs for the remote realise (max-silent-time, timeout,
    /// system-features, …).
    pub options: Vec<(String, String)>,
    /// `cores` as the user set it; `None`: the agent builds with the CPUs the job got.
    pub cores: Option<u32>,
    /// Nix's `keep-failed`: keep a failed build's directory on the node and say where.
    pub keep_failed: bool,
    /// How many bytes of the build's log the client already has: a client that reconnects
    /// to a running build gets the log from there (what was in flight when the old
    /// connection broke is sent again).
    pub log_offset: u64,
}

/// Metadata of one store path: an output as the remote store records it, or an input as the
/// local store does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathInfo {
    pub path: String,
    /// sha256 of the NAR serialisation, lowercase hex.
    pub nar_hash: String,
    pub nar_size: u64,
    pub references: Vec<String>,
    pub deriver: Option<String>,
}

/// Messages from the agent to nsh.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AgentMsg {
    Hello {
        version: u32,
        hostname: String,
        /// `nix-store --version` of the Nix the agent will use.
        nix_version: String,
        /// The store URL the agent uses (`auto` or the configured `remote-store`).
        store: String,
        /// The agent's lease in milliseconds: nsh pings at [`keepalive_for`] it.
        lease_ms: u64,
    },
    Missing {
        paths: Vec<String>,
    },
    Imported {
        paths: u64,
    },
    /// Raw bytes of the build log (whole lines, each ending in `\n`).
    Log(Vec<u8>),
    /// This many bytes of the log, from the client's offset on, are gone (the agent keeps
    /// the last MiB for clients that reconnect); the log goes on after them.
    LogGap {
        bytes: u64,
    },
    /// The build ended; on success `outputs` lists what was built.
    BuildDone(BuildResult),
    /// Precedes the NAR chunks of one output.
    Output(PathInfo),
    NarChunk(Vec<u8>),
    NarEnd,
    /// A failure of the agent itself (not of the build); the connection ends after it.
    Error {
        message: String,
    },
    Pong,
    /// The answer to `Goodbye`: the job's files are gone and the agent exits. `timings`
    /// says where its time went (shown at Nix's debug level, read by `scripts/bench`).
    Bye {
        timings: Vec<Mark>,
    },
    /// The agent has consumed this many import messages of the current upload (counted
    /// from its first `ImportPath` or `ImportChunk`): nsh may send up to
    /// [`IMPORT_WINDOW`] beyond it.
    ImportAck {
        consumed: u64,
    },
    /// The agent waits before answering (another job's upload to this store, or its garbage
    /// collection); the lease keeps running on pings meanwhile.
    Waiting {
        reason: String,
    },
}

/// One moment of the agent's work: `phase` ended `micros` after the agent started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    pub phase: String,
    pub micros: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildResult {
    /// Exit status of the remote `nix-store --realise` (0 = success; Nix uses 100 for a
    /// failed build, 101 for a timeout).
    pub status: i32,
    /// The last error message Nix printed, if any.
    pub message: String,
    /// Store paths `nix-store --realise` printed (the built outputs).
    pub outputs: Vec<String>,
    /// The failed build's directory Nix kept on the node (with `keep_failed`), as Nix's
    /// "keeping build directory" message names it.
    pub kept_dir: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalive_leaves_room_for_late_pings() {
        assert_eq!(keepalive_for(LEASE), KEEPALIVE);
        assert_eq!(
            keepalive_for(Duration::from_secs(4)),
            Duration::from_secs(1)
        );
        assert_eq!(
            keepalive_for(Duration::from_millis(10)),
            Duration::from_millis(100)
        );
        assert!(reconnect_window(LEASE) < LEASE);
    }
}
