//! The client side of Nix's worker protocol (what `nix-daemon` speaks), as far as the agent
//! needs it: the handshake, `AddToStoreNar` with a framed NAR stream, and the daemon's
//! `STDERR_*` messages. Mirrors Nix `src/libstore/worker-protocol-connection.cc`,
//! `remote-store.cc` (`addToStore`) and `daemon.cc`.
//!
//! Why the agent talks to the daemon instead of running `nix-store --import`: `--import`
//! reads each whole NAR into memory before it writes a byte, so a big input is received,
//! then written; `AddToStoreNar` (protocol 1.23+, Nix 2.4+) restores the NAR while it
//! arrives, the way `nix copy` to `ssh-ng://` does.
//!
//! ```plain
//! client: u64 MAGIC_1, u64 version            server: u64 MAGIC_2, u64 version
//! client: [>=1.14] u64 0 (cpu affinity), [>=1.11] u64 0 (reserve space)
//! server: [>=1.33] str nix-version, [>=1.35] u64 trusted (0 unknown, 1 yes, 2 no), STDERR_LAST
//! client: u64 39, str path, str deriver, str narHash (base16), strs references,
//!         u64 registrationTime, u64 narSize, u64 ultimate, strs sigs, str ca,
//!         u64 repair, u64 dontCheckSigs, then frames (u64 len, bytes), u64 0
//! server: STDERR_* messages …, STDERR_LAST (success) or STDERR_ERROR
//! ```

use std::io::{self, Read, Write};

#[cfg(test)]
use crate::framing::read_string_list;
use crate::framing::{WireError, read_string, read_u64, write_bytes, write_string_list, write_u64};

pub const WORKER_MAGIC_1: u64 = 0x6e69_7863;
pub const WORKER_MAGIC_2: u64 = 0x6478_696f;

/// The version nsh announces: 1.35 (Nix 2.15+ daemons answer with their trust in us; newer
/// ones settle on 1.35, which avoids the 1.38 feature exchange nsh has no use for).
pub const CLIENT_VERSION: u64 = 1 << 8 | 35;
/// `AddToStoreNar` streams the NAR in frames from 1.23 on.
pub const MIN_DAEMON_VERSION: u64 = 1 << 8 | 23;

pub const OP_ADD_TO_STORE_NAR: u64 = 39;

pub const STDERR_NEXT: u64 = 0x6f6c_6d67;
pub const STDERR_READ: u64 = 0x6461_7461;
pub const STDERR_WRITE: u64 = 0x6461_7416;
pub const STDERR_LAST: u64 = 0x616c_7473;
pub const STDERR_ERROR: u64 = 0x6378_7470;
pub const STDERR_START_ACTIVITY: u64 = 0x5354_5254;
pub const STDERR_STOP_ACTIVITY: u64 = 0x5354_4f50;
pub const STDERR_RESULT: u64 = 0x5253_4c54;

/// Longest string accepted from the daemon (log lines, error messages, the version).
const MAX_DAEMON_STRING: u64 = 1 << 20;
/// Most fields or error traces accepted in one message.
const MAX_DAEMON_COUNT: u64 = 4096;

/// Protocol minor version of a wire version number.
pub fn minor(version: u64) -> u64 {
    version & 0xff
}

/// Formats a wire version number as Nix prints it (`1.35`).
pub fn version_string(version: u64) -> String {
    format!("{}.{}", (version >> 8) & 0xff, minor(version))
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    #[error("the Nix daemon did not answer with the worker protocol magic (got {0:#x})")]
    BadMagic(u64),
    #[error(
        "the Nix daemon speaks worker protocol {}, nsh needs {} or newer (Nix 2.4+)",
        version_string(*.0),
        version_string(MIN_DAEMON_VERSION)
    )]
    TooOld(u64),
    #[error("the Nix daemon refused: {0}")]
    Daemon(String),
    #[error("unexpected message {0:#x} from the Nix daemon")]
    UnexpectedMessage(u64),
    #[error("the Nix daemon sent an error of unknown type '{0}'")]
    BadErrorType(String),
    #[error("unsupported field type {0} in a message from the Nix daemon")]
    BadFieldType(u64),
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("writing to the Nix daemon: {0}")]
    Io(#[from] io::Error),
}

/// What the handshake settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    /// The version both sides use: the smaller of theirs and [`CLIENT_VERSION`].
    pub version: u64,
    /// The daemon's Nix version, when the protocol carries it (1.33+).
    pub nix_version: Option<String>,
}

/// Runs the client side of the handshake, up to and including the daemon's first
/// `STDERR_LAST` (it may log before it: those lines are passed to `on_log`).
pub fn client_handshake(
    r: &mut impl Read,
    w: &mut impl Write,
    on_log: &mut impl FnMut(&str),
) -> Result<Handshake, WorkerError> {
    write_u64(w, WORKER_MAGIC_1)?;
    write_u64(w, CLIENT_VERSION)?;
    w.flush()?;
    let magic = read_u64(r)?;
    if magic != WORKER_MAGIC_2 {
        return Err(WorkerError::BadMagic(magic));
    }
    let daemon = read_u64(r)?;
    if daemon >> 8 != 1 || daemon < MIN_DAEMON_VERSION {
        return Err(WorkerError::TooOld(daemon));
    }
    let version = daemon.min(CLIENT_VERSION);
    write_u64(w, 0)?; // obsolete CPU affinity: none (1.14+)
    write_u64(w, 0)?; // obsolete reserveSpace (1.11+)
    w.flush()?;
    let nix_version = if minor(version) >= 33 {
        Some(read_string(r, MAX_DAEMON_STRING)?)
    } else {
        None
    };
    if minor(version) >= 35 {
        read_u64(r)?; // trusted: the daemon decides what that allows, nsh needs nothing of it
    }
    loop {
        match read_stderr(r, version)? {
            Stderr::Next(line) => on_log(&line),
            Stderr::Progress => {}
            Stderr::Last => {
                return Ok(Handshake {
                    version,
                    nix_version,
                });
            }
            Stderr::Error(e) => return Err(WorkerError::Daemon(e)),
            Stderr::Unexpected(tag) => return Err(WorkerError::UnexpectedMessage(tag)),
        }
    }
}

/// A store path's metadata for `AddToStoreNar`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddToStoreNar<'a> {
    pub path: &'a str,
    pub deriver: Option<&'a str>,
    /// sha256 of the NAR, lowercase hex.
    pub nar_hash_hex: &'a str,
    pub references: &'a [String],
    pub nar_size: u64,
}

/// Writes the `AddToStoreNar` operation and its arguments; the NAR follows as frames
/// ([`write_frame`], then [`write_frame_end`]). Signatures are not checked when the daemon
/// trusts us (as `nix-store --import` does); an untrusted client gets the daemon's policy.
pub fn write_add_to_store_nar(w: &mut impl Write, a: &AddToStoreNar<'_>) -> io::Result<()> {
    write_u64(w, OP_ADD_TO_STORE_NAR)?;
    write_bytes(w, a.path.as_bytes())?;
    write_bytes(w, a.deriver.unwrap_or("").as_bytes())?;
    write_bytes(w, a.nar_hash_hex.as_bytes())?;
    write_string_list(w, a.references)?;
    write_u64(w, 0)?; // registrationTime: now
    write_u64(w, a.nar_size)?;
    write_u64(w, 0)?; // ultimate: no, this store did not build it
    write_u64(w, 0)?; // sigs: none
    write_bytes(w, b"")?; // ca: none
    write_u64(w, 0)?; // repair: no
    write_u64(w, 1) // dontCheckSigs
}

/// One frame of a framed stream. Empty data would end the stream, so it is skipped.
pub fn write_frame(w: &mut impl Write, data: &[u8]) -> io::Result<()> {
    if data.is_empty() {
        return Ok(());
    }
    write_u64(w, data.len() as u64)?;
    w.write_all(data)
}

/// Ends a framed stream.
pub fn write_frame_end(w: &mut impl Write) -> io::Result<()> {
    write_u64(w, 0)
}

/// A message from the daemon while it works on an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stderr {
    /// A log line.
    Next(String),
    /// The operation succeeded (its result, if any, follows).
    Last,
    /// The operation failed with this message.
    Error(String),
    /// Progress (activities, results): nothing the agent shows.
    Progress,
    /// The daemon asks for data or sends data to a sink: not used by `AddToStoreNar`.
    Unexpected(u64),
}

/// Reads one `STDERR_*` message.
pub fn read_stderr(r: &mut impl Read, version: u64) -> Result<Stderr, WorkerError> {
    let tag = read_u64(r)?;
    Ok(match tag {
        STDERR_NEXT => Stderr::Next(read_string(r, MAX_DAEMON_STRING)?),
        STDERR_LAST => Stderr::Last,
        STDERR_ERROR => Stderr::Error(read_error(r, version)?),
        STDERR_START_ACTIVITY => {
            read_u64(r)?; // id
            read_u64(r)?; // level
            read_u64(r)?; // type
            read_string(r, MAX_DAEMON_STRING)?;
            read_fields(r)?;
            read_u64(r)?; // parent
            Stderr::Progress
        }
        STDERR_STOP_ACTIVITY => {
            read_u64(r)?;
            Stderr::Progress
        }
        STDERR_RESULT => {
            read_u64(r)?; // id
            read_u64(r)?; // type
            read_fields(r)?;
            Stderr::Progress
        }
        STDERR_READ | STDERR_WRITE => Stderr::Unexpected(tag),
        other => return Err(WorkerError::UnexpectedMessage(other)),
    })
}

/// A count of items that follow, refused above [`MAX_DAEMON_COUNT`].
fn read_count(r: &mut impl Read, what: &'static str) -> Result<u64, WorkerError> {
    let n = read_u64(r)?;
    if n > MAX_DAEMON_COUNT {
        return Err(WireError::TooLong {
            what,
            len: n,
            max: MAX_DAEMON_COUNT,
        }
        .into());
    }
    Ok(n)
}

fn read_fields(r: &mut impl Read) -> Result<(), WorkerError> {
    for _ in 0..read_count(r, "fields")? {
        match read_u64(r)? {
            0 => {
                read_u64(r)?;
            }
            1 => {
                read_string(r, MAX_DAEMON_STRING)?;
            }
            t => return Err(WorkerError::BadFieldType(t)),
        }
    }
    Ok(())
}

/// An error as the daemon sends it: structured from 1.26 on (type, level, name, message,
/// position, traces), a message and a status before.
fn read_error(r: &mut impl Read, version: u64) -> Result<String, WorkerError> {
    if minor(version) < 26 {
        let msg = read_string(r, MAX_DAEMON_STRING)?;
        read_u64(r)?; // exit status
        return Ok(msg);
    }
    let kind = read_string(r, MAX_DAEMON_STRING)?;
    if kind != "Error" {
        return Err(WorkerError::BadErrorType(kind));
    }
    read_u64(r)?; // level
    read_string(r, MAX_DAEMON_STRING)?; // name (unused by Nix)
    let mut msg = read_string(r, MAX_DAEMON_STRING)?;
    read_u64(r)?; // have position: always 0
    for _ in 0..read_count(r, "error traces")? {
        read_u64(r)?; // have position
        let hint = read_string(r, MAX_DAEMON_STRING)?;
        msg.push_str("\n  … ");
        msg.push_str(&hint);
    }
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn read_string_set(r: &mut impl Read) -> Result<Vec<String>, WireError> {
        read_string_list(r, MAX_DAEMON_COUNT, MAX_DAEMON_STRING)
    }

    fn server_hello(version: u64, extra: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut s = Vec::new();
        write_u64(&mut s, WORKER_MAGIC_2).unwrap();
        write_u64(&mut s, version).unwrap();
        extra(&mut s);
        s
    }

    #[test]
    fn handshake_with_nix_2_8_daemon() {
        // Nix 2.8 speaks 1.34: it sends its version string but no trust flag.
        let reply = server_hello(1 << 8 | 34, |s| {
            write_bytes(s, b"2.8.0").unwrap();
            write_u64(s, STDERR_LAST).unwrap();
        });
        let mut out = Vec::new();
        let hs = client_handshake(&mut Cursor::new(reply), &mut out, &mut |_| {}).unwrap();
        assert_eq!(hs.version, 1 << 8 | 34);
        assert_eq!(hs.nix_version.as_deref(), Some("2.8.0"));
        let mut c = Cursor::new(out);
        assert_eq!(read_u64(&mut c).unwrap(), WORKER_MAGIC_1);
        assert_eq!(read_u64(&mut c).unwrap(), CLIENT_VERSION);
        assert_eq!(read_u64(&mut c).unwrap(), 0);
        assert_eq!(read_u64(&mut c).unwrap(), 0);
    }

    #[test]
    fn handshake_with_newer_daemon_settles_on_ours() {
        let reply = server_hello(1 << 8 | 39, |s| {
            write_bytes(s, b"2.34.8").unwrap();
            write_u64(s, 1).unwrap();
            write_u64(s, STDERR_NEXT).unwrap();
            write_bytes(s, b"warning: something").unwrap();
            write_u64(s, STDERR_LAST).unwrap();
        });
        let mut logged = Vec::new();
        let hs = client_handshake(&mut Cursor::new(reply), &mut Vec::new(), &mut |l| {
            logged.push(l.to_string())
        })
        .unwrap();
        assert_eq!(hs.version, CLIENT_VERSION);
        assert_eq!(logged, ["warning: something"]);
    }

    #[test]
    fn handshake_refuses_old_or_foreign_daemons() {
        let old = server_hello(1 << 8 | 21, |_| {});
        assert!(matches!(
            client_handshake(&mut Cursor::new(old), &mut Vec::new(), &mut |_| {}),
            Err(WorkerError::TooOld(_))
        ));
        let mut bad = Vec::new();
        write_u64(&mut bad, 0x1234).unwrap();
        assert!(matches!(
            client_handshake(&mut Cursor::new(bad), &mut Vec::new(), &mut |_| {}),
            Err(WorkerError::BadMagic(0x1234))
        ));
        // A daemon that hangs up mid-handshake is an error, not a panic.
        let cut = server_hello(1 << 8 | 35, |_| {});
        assert!(client_handshake(&mut Cursor::new(cut), &mut Vec::new(), &mut |_| {}).is_err());
    }

    #[test]
    fn structured_and_old_errors() {
        let mut s = Vec::new();
        write_u64(&mut s, STDERR_ERROR).unwrap();
        write_bytes(&mut s, b"Error").unwrap();
        write_u64(&mut s, 0).unwrap();
        write_bytes(&mut s, b"").unwrap();
        write_bytes(&mut s, b"hash mismatch importing path").unwrap();
        write_u64(&mut s, 0).unwrap();
        write_u64(&mut s, 1).unwrap();
        write_u64(&mut s, 0).unwrap();
        write_bytes(&mut s, b"while adding").unwrap();
        assert_eq!(
            read_stderr(&mut Cursor::new(s), CLIENT_VERSION).unwrap(),
            Stderr::Error("hash mismatch importing path\n  … while adding".into())
        );
        let mut old = Vec::new();
        write_u64(&mut old, STDERR_ERROR).unwrap();
        write_bytes(&mut old, b"no space").unwrap();
        write_u64(&mut old, 1).unwrap();
        assert_eq!(
            read_stderr(&mut Cursor::new(old), 1 << 8 | 25).unwrap(),
            Stderr::Error("no space".into())
        );
    }

    #[test]
    fn activities_are_skipped_whole() {
        let mut s = Vec::new();
        write_u64(&mut s, STDERR_START_ACTIVITY).unwrap();
        for v in [7, 3, 100] {
            write_u64(&mut s, v).unwrap();
        }
        write_bytes(&mut s, b"copying").unwrap();
        write_u64(&mut s, 2).unwrap();
        write_u64(&mut s, 0).unwrap();
        write_u64(&mut s, 42).unwrap();
        write_u64(&mut s, 1).unwrap();
        write_bytes(&mut s, b"x").unwrap();
        write_u64(&mut s, 0).unwrap();
        write_u64(&mut s, STDERR_LAST).unwrap();
        let mut c = Cursor::new(s);
        assert_eq!(
            read_stderr(&mut c, CLIENT_VERSION).unwrap(),
            Stderr::Progress
        );
        assert_eq!(read_stderr(&mut c, CLIENT_VERSION).unwrap(), Stderr::Last);
        let mut bad = Vec::new();
        write_u64(&mut bad, 0xdead).unwrap();
        assert!(read_stderr(&mut Cursor::new(bad), CLIENT_VERSION).is_err());
    }

    #[test]
    fn add_to_store_nar_layout() {
        let refs = vec!["/nix/store/aaaa-dep".to_string()];
        let mut w = Vec::new();
        write_add_to_store_nar(
            &mut w,
            &AddToStoreNar {
                path: "/nix/store/bbbb-x",
                deriver: None,
                nar_hash_hex: "00",
                references: &refs,
                nar_size: 96,
            },
        )
        .unwrap();
        write_frame(&mut w, b"abc").unwrap();
        write_frame(&mut w, b"").unwrap();
        write_frame_end(&mut w).unwrap();
        let mut c = Cursor::new(w);
        assert_eq!(read_u64(&mut c).unwrap(), OP_ADD_TO_STORE_NAR);
        assert_eq!(read_string(&mut c, 100).unwrap(), "/nix/store/bbbb-x");
        assert_eq!(read_string(&mut c, 100).unwrap(), "");
        assert_eq!(read_string(&mut c, 100).unwrap(), "00");
        assert_eq!(read_string_set(&mut c).unwrap(), refs);
        assert_eq!(read_u64(&mut c).unwrap(), 0);
        assert_eq!(read_u64(&mut c).unwrap(), 96);
        assert_eq!(read_u64(&mut c).unwrap(), 0);
        assert!(read_string_set(&mut c).unwrap().is_empty());
        assert_eq!(read_string(&mut c, 100).unwrap(), "");
        assert_eq!(read_u64(&mut c).unwrap(), 0);
        assert_eq!(read_u64(&mut c).unwrap(), 1);
        assert_eq!(read_u64(&mut c).unwrap(), 3);
        let mut abc = [0u8; 3];
        c.read_exact(&mut abc).unwrap();
        assert_eq!(&abc, b"abc");
        assert_eq!(read_u64(&mut c).unwrap(), 0);
    }
}
