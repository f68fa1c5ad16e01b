//! What the agent asks the node's Nix daemon over the one connection it opened before nsh
//! arrived: which paths are valid (`QueryValidPaths`, for the missing inputs), a path's
//! metadata (`QueryPathInfo`) and its NAR (`NarFromPath`), for an output. Each used to be
//! a `nix-store` process, ~30 ms of start-up apiece on the testbed. Mirrors Nix
//! `src/libstore/daemon.cc` and `worker-protocol.cc` (`UnkeyedValidPathInfo`).
//!
//! ```plain
//! client: u64 31, strs paths, [>=1.27] u64 substitute   server: STDERR_* …, LAST, strs valid
//! client: u64 26, str path                              server: STDERR_* …, LAST,
//!     [>=1.17] u64 valid, then if valid: str deriver, str narHash (base16),
//!     strs references, u64 registrationTime, u64 narSize,
//!     [>=1.16] u64 ultimate, strs sigs, str ca
//! client: u64 38, str path                              server: STDERR_* …, LAST, the NAR
//! ```
//!
//! The NAR after `NarFromPath` is not framed: only parsing it (`nar::parse`) finds its end.

use std::io::{self, Read, Write};

use crate::framing::{
    read_string, read_string_list, read_u64, write_bytes, write_string_list, write_u64,
};
use crate::worker_protocol::{Stderr, WorkerError, minor, read_stderr};

pub const OP_QUERY_PATH_INFO: u64 = 26;
pub const OP_QUERY_VALID_PATHS: u64 = 31;
pub const OP_NAR_FROM_PATH: u64 = 38;

/// Longest store path or hash string accepted (Nix's own limit on a store path is 211
/// characters after the store dir; a long store dir fits too).
pub const MAX_PATH: u64 = 4096;
/// Most paths accepted in one answer (the agent asks about at most this many at once).
pub const MAX_PATHS: u64 = 1 << 16;

/// What the daemon records of a valid path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonPathInfo {
    pub deriver: Option<String>,
    /// sha256 of the NAR, lowercase hex, as the daemon sends it.
    pub nar_hash_hex: String,
    pub references: Vec<String>,
    pub nar_size: u64,
}

/// Asks which of `paths` are valid (no substitution).
pub fn write_query_valid_paths(
    w: &mut impl Write,
    version: u64,
    paths: &[String],
) -> io::Result<()> {
    write_u64(w, OP_QUERY_VALID_PATHS)?;
    write_string_list(w, paths)?;
    if minor(version) >= 27 {
        write_u64(w, 0)?; // substitute: no
    }
    w.flush()
}

/// The answer to [`write_query_valid_paths`].
pub fn read_valid_paths(
    r: &mut impl Read,
    version: u64,
    on_log: &mut impl FnMut(&str),
) -> Result<Vec<String>, WorkerError> {
    await_last(r, version, on_log)?;
    Ok(read_string_list(r, MAX_PATHS, MAX_PATH)?)
}

/// An operation whose only argument is one store path.
fn write_path_op(w: &mut impl Write, op: u64, path: &str) -> io::Result<()> {
    write_u64(w, op)?;
    write_bytes(w, path.as_bytes())?;
    w.flush()
}

/// Asks for `path`'s metadata.
pub fn write_query_path_info(w: &mut impl Write, path: &str) -> io::Result<()> {
    write_path_op(w, OP_QUERY_PATH_INFO, path)
}

/// The answer to [`write_query_path_info`]: `None` if the path is not valid. Daemons below
/// 1.17 answer an invalid path with an error instead.
pub fn read_path_info(
    r: &mut impl Read,
    version: u64,
    on_log: &mut impl FnMut(&str),
) -> Result<Option<DaemonPathInfo>, WorkerError> {
    await_last(r, version, on_log)?;
    if minor(version) >= 17 && read_u64(r)? == 0 {
        return Ok(None);
    }
    let deriver = read_string(r, MAX_PATH)?;
    let nar_hash_hex = read_string(r, MAX_PATH)?;
    let references = read_string_list(r, MAX_PATHS, MAX_PATH)?;
    read_u64(r)?; // registrationTime
    let nar_size = read_u64(r)?;
    if minor(version) >= 16 {
        read_u64(r)?; // ultimate
        read_string_list(r, MAX_PATHS, MAX_PATH)?; // sigs
        read_string(r, MAX_PATH)?; // ca
    }
    Ok(Some(DaemonPathInfo {
        deriver: Some(deriver).filter(|d| !d.is_empty()),
        nar_hash_hex,
        references,
        nar_size,
    }))
}

/// Asks for `path`'s NAR: after [`await_last`] it follows on the connection, unframed.
pub fn write_nar_from_path(w: &mut impl Write, path: &str) -> io::Result<()> {
    write_path_op(w, OP_NAR_FROM_PATH, path)
}

/// Reads the daemon's messages up to `STDERR_LAST`; log lines go to `on_log`.
pub fn await_last(
    r: &mut impl Read,
    version: u64,
    on_log: &mut impl FnMut(&str),
) -> Result<(), WorkerError> {
    loop {
        match read_stderr(r, version)? {
            Stderr::Next(line) => on_log(&line),
            Stderr::Progress => {}
            Stderr::Last => return Ok(()),
            Stderr::Error(e) => return Err(WorkerError::Daemon(e)),
            Stderr::Unexpected(tag) => return Err(WorkerError::UnexpectedMessage(tag)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker_protocol::{STDERR_LAST, STDERR_NEXT};
    use std::io::Cursor;

    const V35: u64 = 1 << 8 | 35;
    const V23: u64 = 1 << 8 | 23;

    #[test]
    fn valid_paths_request_and_answer() {
        let paths = vec!["/nix/store/a".to_string(), "/nix/store/b".to_string()];
        let mut out = Vec::new();
        write_query_valid_paths(&mut out, V35, &paths).unwrap();
        let mut c = Cursor::new(out);
        assert_eq!(read_u64(&mut c).unwrap(), OP_QUERY_VALID_PATHS);
        assert_eq!(read_string_list(&mut c, 10, 100).unwrap(), paths);
        assert_eq!(read_u64(&mut c).unwrap(), 0, "substitute flag from 1.27 on");
        // 1.23 has no substitute flag.
        let mut old = Vec::new();
        write_query_valid_paths(&mut old, V23, &paths).unwrap();
        assert_eq!(old.len() as u64, c.position() - 8);

        let mut answer = Vec::new();
        write_u64(&mut answer, STDERR_NEXT).unwrap();
        write_bytes(&mut answer, b"hello").unwrap();
        write_u64(&mut answer, STDERR_LAST).unwrap();
        write_string_list(&mut answer, &paths[1..]).unwrap();
        let mut logged = Vec::new();
        let valid = read_valid_paths(&mut Cursor::new(answer), V35, &mut |l| {
            logged.push(l.to_owned())
        })
        .unwrap();
        assert_eq!(valid, paths[1..]);
        assert_eq!(logged, ["hello"]);
    }

    fn info_answer(version: u64, valid: bool) -> Vec<u8> {
        let mut a = Vec::new();
        write_u64(&mut a, STDERR_LAST).unwrap();
        if minor(version) >= 17 {
            write_u64(&mut a, valid as u64).unwrap();
            if !valid {
                return a;
            }
        }
        write_bytes(&mut a, b"").unwrap(); // no deriver
        write_bytes(&mut a, b"ab12").unwrap();
        write_string_list(&mut a, &["/nix/store/r"]).unwrap();
        write_u64(&mut a, 1_700_000_000).unwrap();
        write_u64(&mut a, 120).unwrap();
        if minor(version) >= 16 {
            write_u64(&mut a, 1).unwrap();
            write_string_list(&mut a, &["cache:sig"]).unwrap();
            write_bytes(&mut a, b"").unwrap();
        }
        a
    }

    #[test]
    fn path_info_of_valid_and_invalid_paths() {
        let mut out = Vec::new();
        write_query_path_info(&mut out, "/nix/store/x").unwrap();
        let mut c = Cursor::new(out);
        assert_eq!(read_u64(&mut c).unwrap(), OP_QUERY_PATH_INFO);
        assert_eq!(read_string(&mut c, 100).unwrap(), "/nix/store/x");

        let want = DaemonPathInfo {
            deriver: None,
            nar_hash_hex: "ab12".into(),
            references: vec!["/nix/store/r".into()],
            nar_size: 120,
        };
        for v in [V35, V23] {
            let mut r = Cursor::new(info_answer(v, true));
            assert_eq!(
                read_path_info(&mut r, v, &mut |_| {}).unwrap(),
                Some(want.clone())
            );
            assert_eq!(
                r.position() as usize,
                r.get_ref().len(),
                "all read at {v:#x}"
            );
        }
        let mut r = Cursor::new(info_answer(V35, false));
        assert_eq!(read_path_info(&mut r, V35, &mut |_| {}).unwrap(), None);
    }
}
