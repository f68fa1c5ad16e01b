//! `FetchOutput`: an output's metadata from the remote store, then its NAR
//! (`nix-store --dump`) as one zstd stream cut into `NarChunk` frames.
//!
//! The agent hashes the NAR as it streams and refuses to end it with `NarEnd` when the
//! bytes do not match the store's recorded hash: the client checks again, but a corrupt
//! remote store is then reported where it happened.

use std::io::{Read, Write};
use std::process::Stdio;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use nsh_wire::agent_protocol::{AgentMsg, CHUNK_SIZE, PathInfo};
use nsh_wire::compression;
use nsh_wire::nixbase32;
use sha2::{Digest, Sha256};

use crate::daemon::Queries;
use crate::log::log;
use crate::nix::{NixStore, check_path_arg, tail_text};
use crate::procs::{ChildGuard, Children};

/// Compressed bytes collected before a `NarChunk` goes out.
const SEND_AT: usize = 256 << 10;

/// Turns `nix-store -q --hash` output (`sha256:<nix32>`, or `sha256:<hex>`) into hex.
pub fn nar_hash_hex(printed: &str) -> Result<String> {
    let s = printed.trim();
    let Some(h) = s.strip_prefix("sha256:") else {
        bail!("unexpected NAR hash {s:?}: expected sha256:…");
    };
    let bytes = match h.len() {
        52 => nixbase32::decode(h).with_context(|| format!("decoding NAR hash {s:?}"))?,
        64 => hex::decode(h).with_context(|| format!("decoding NAR hash {s:?}"))?,
        _ => bail!("unexpected NAR hash {s:?}: wrong length"),
    };
    Ok(hex::encode(bytes))
}

/// Reads the remote store's metadata of `path`: from the agent's daemon connection, or
/// with `nix-store` when that is not there.
pub fn query_info(nix: &NixStore, queries: &Queries, path: &str) -> Result<PathInfo> {
    check_path_arg(path)?;
    if let Some(info) = queries.path_info(path) {
        return Ok(PathInfo {
            path: path.to_owned(),
            // The daemon sends base16 without the algorithm (Nix's worker-protocol.cc).
            nar_hash: nar_hash_hex(&format!(
                "sha256:{}",
                info.nar_hash_hex.trim_start_matches("sha256:")
            ))?,
            nar_size: info.nar_size,
            references: info.references,
            deriver: info.deriver,
        });
    }
    let nar_hash = nar_hash_hex(&nix.run(&["-q", "--hash", path])?)?;
    let size = nix.run(&["-q", "--size", path])?;
    let nar_size = size
        .trim()
        .parse()
        .with_context(|| format!("nix-store -q --size printed {:?}", size.trim()))?;
    let references = nix
        .run(&["-q", "--references", path])?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    let deriver = nix.run(&["-q", "--deriver", path])?;
    let deriver = match deriver.trim() {
        "" | "unknown-deriver" => None,
        d => Some(d.to_owned()),
    };
    Ok(PathInfo {
        path: path.to_owned(),
        nar_hash,
        nar_size,
        references,
        deriver,
    })
}

/// Sends `Output`, the NAR chunks and `NarEnd` through `send`.
pub fn send_output(
    nix: &NixStore,
    queries: &Queries,
    children: &Arc<Children>,
    path: &str,
    send: &mut dyn FnMut(AgentMsg) -> Result<()>,
) -> Result<()> {
    let info = query_info(nix, queries, path)?;
    #[cfg(feature = "fault-injection")]
    let fault_mode = crate::fault::current();
    #[cfg(feature = "fault-injection")]
    let info = match fault_mode {
        Some(crate::fault::Fault::Hostile(kind)) => {
            return crate::fault::send_hostile(kind, info, send);
        }
        _ => crate::fault::rewrite_info(fault_mode, info),
    };
    let expected_hash = info.nar_hash.clone();
    let expected_size = info.nar_size;
    send(AgentMsg::Output(info))?;
    let mut out = NarStream {
        enc: compression::encoder(Vec::new()).context("creating zstd encoder")?,
        hasher: Sha256::new(),
        size: 0,
        send,
        #[cfg(feature = "fault-injection")]
        fault: crate::fault::NarFault::new(fault_mode),
    };
    let from_daemon = queries.nar(path, &mut |data| out.feed(data));
    let via = match from_daemon {
        Some(done) => done.map(|_| "nix-daemon")?,
        None if out.size == 0 => {
            dump(nix, children, path, &mut out)?;
            "nix-store --dump"
        }
        None => bail!("reading the NAR of {path} from nix-daemon --stdio failed midway"),
    };
    let (hash, size) = out.finish()?;
    if hash != expected_hash || size != expected_size {
        bail!(
            "NAR of {path} does not match the remote store's record: sha256 {hash}, {size} bytes; \
             recorded {expected_hash}, {expected_size} bytes (run nix-store --verify --check-contents on the node)"
        );
    }
    send(AgentMsg::NarEnd)?;
    log!(
        "sent {path}: {size} NAR bytes (from {via}), zstd level {}",
        compression::level()
    );
    Ok(())
}

/// An output's NAR on its way out: hashed (the bytes as read), compressed, sent in chunks.
struct NarStream<'a> {
    enc: zstd::stream::write::Encoder<'static, Vec<u8>>,
    hasher: Sha256,
    size: u64,
    send: &'a mut dyn FnMut(AgentMsg) -> Result<()>,
    #[cfg(feature = "fault-injection")]
    fault: crate::fault::NarFault,
}

impl NarStream<'_> {
    fn feed(&mut self, data: &[u8]) -> Result<()> {
        self.hasher.update(data);
        #[cfg(feature = "fault-injection")]
        let data = &mut data.to_vec()[..];
        #[cfg(feature = "fault-injection")]
        self.fault.apply(self.size, data);
        self.size += data.len() as u64;
        self.enc.write_all(data).context("compressing NAR")?;
        if self.enc.get_ref().len() >= SEND_AT {
            let out = std::mem::take(self.enc.get_mut());
            send_chunks(&out, self.send)?;
        }
        Ok(())
    }

    /// Sends the rest; the sha256 (hex) and size of what was read.
    fn finish(self) -> Result<(String, u64)> {
        let out = self.enc.finish().context("finishing zstd stream")?;
        send_chunks(&out, self.send)?;
        #[cfg(feature = "fault-injection")]
        self.fault.check_done()?;
        Ok((hex::encode(self.hasher.finalize()), self.size))
    }
}

/// The NAR through `nix-store --dump`, when the daemon connection is not there.
fn dump(nix: &NixStore, children: &Arc<Children>, path: &str, out: &mut NarStream) -> Result<()> {
    let mut child = nix
        .dump_command(path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawning {} --dump", nix.program().display()))?;
    let _guard = ChildGuard::new(children, child.id() as i32);
    let mut stdout = child.stdout.take().context("dump stdout")?;
    let mut stderr = child.stderr.take().context("dump stderr")?;
    let err_thread = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stderr.read_to_end(&mut b);
        b
    });
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = match stdout.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("reading nix-store --dump"),
        };
        out.feed(buf.get(..n).context("read past buffer")?)?;
    }
    let status = child.wait().context("waiting for nix-store --dump")?;
    let stderr = err_thread.join().unwrap_or_default();
    if !status.success() {
        bail!(
            "nix-store --dump {path} failed ({status}): {}",
            tail_text(&stderr, 2000)
        );
    }
    Ok(())
}

fn send_chunks(data: &[u8], send: &mut dyn FnMut(AgentMsg) -> Result<()>) -> Result<()> {
    for c in data.chunks(CHUNK_SIZE) {
        send(AgentMsg::NarChunk(c.to_vec()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_printed_hashes() {
        let hex = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(
            nar_hash_hex("sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s\n").unwrap(),
            hex
        );
        assert_eq!(nar_hash_hex(&format!("sha256:{hex}")).unwrap(), hex);
        assert!(nar_hash_hex("md5:abc").is_err());
        assert!(nar_hash_hex("sha256:xyz").is_err());
    }
}
