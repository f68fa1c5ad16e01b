//! Moving store paths: the inputs the remote store lacks go up as one zstd-compressed
//! export stream; each output comes back as a zstd-compressed NAR, unpacked and verified
//! here before anything is registered.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use nsh_wire::agent_protocol::{AgentMsg, CHUNK_SIZE, ClientMsg, OutputInfo};
use tokio::io::AsyncReadExt;

use crate::agent_channel::AgentChannel;
use crate::local_store::LocalStore;

/// What an upload moved, for the user and for tests.
#[derive(Debug, Default, Clone, Copy)]
pub struct UploadStats {
    pub closure: usize,
    pub missing: usize,
    pub raw_bytes: u64,
    pub sent_bytes: u64,
}

/// zstd level for uploads and downloads; `NSH_ZSTD_LEVEL` overrides (0 = zstd's default).
pub fn zstd_level() -> i32 {
    std::env::var("NSH_ZSTD_LEVEL")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// Sends the paths of `closure` the remote store lacks (one round trip to find out).
pub async fn upload_missing(
    chan: &mut AgentChannel,
    store: &LocalStore,
    closure: Vec<String>,
) -> Result<UploadStats> {
    let mut stats = UploadStats {
        closure: closure.len(),
        ..Default::default()
    };
    chan.send(&ClientMsg::QueryMissing {
        paths: closure.clone(),
    })
    .await?;
    chan.flush().await?;
    let missing = match chan.recv().await? {
        AgentMsg::Missing { paths } => paths,
        AgentMsg::Error { message } => bail!("the agent on {} failed: {message}", chan.host),
        other => bail!(
            "unexpected answer from the agent on {}: {other:?}",
            chan.host
        ),
    };
    // Only ask to export what we offered: the agent is not trusted to name paths.
    let missing: Vec<String> = missing
        .into_iter()
        .filter(|p| closure.contains(p))
        .collect();
    stats.missing = missing.len();
    if missing.is_empty() {
        return Ok(stats);
    }
    let mut export = store.spawn_export(&missing)?;
    let mut stdout = export
        .stdout
        .take()
        .context("no stdout from nix-store --export")?;
    let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), zstd_level())?;
    let mut buf = vec![0u8; CHUNK_SIZE];
    loop {
        let n = stdout
            .read(&mut buf)
            .await
            .context("reading 'nix-store --export' failed")?;
        if n == 0 {
            break;
        }
        stats.raw_bytes += n as u64;
        std::io::Write::write_all(&mut encoder, &buf[..n])?;
        let out = std::mem::take(encoder.get_mut());
        if !out.is_empty() {
            stats.sent_bytes += out.len() as u64;
            chan.send(&ClientMsg::ImportChunk(out)).await?;
        }
    }
    let tail = encoder.finish()?;
    if !tail.is_empty() {
        stats.sent_bytes += tail.len() as u64;
        chan.send(&ClientMsg::ImportChunk(tail)).await?;
    }
    let status = export.wait().await?;
    if !status.success() {
        let mut err = String::new();
        if let Some(mut e) = export.stderr.take() {
            e.read_to_string(&mut err).await.ok();
        }
        bail!("'nix-store --export' failed ({status}): {}", err.trim());
    }
    chan.send(&ClientMsg::ImportEnd).await?;
    chan.flush().await?;
    match chan.recv().await? {
        AgentMsg::Imported { .. } => Ok(stats),
        AgentMsg::Error { message } => bail!(
            "importing the inputs into the store on {} failed: {message}",
            chan.host
        ),
        other => bail!(
            "unexpected answer from the agent on {}: {other:?}",
            chan.host
        ),
    }
}

/// A downloaded, unpacked and verified output, ready to be registered.
#[derive(Debug, Clone)]
pub struct FetchedOutput {
    pub info: OutputInfo,
    pub nar_sha256_hex: String,
    pub nar_size: u64,
}

/// Fetches one output's NAR and unpacks it at its store path. The NAR is checked against
/// the size and hash the agent announced; on any mismatch nothing is left behind.
pub async fn fetch_output(
    chan: &mut AgentChannel,
    store: &LocalStore,
    path: &str,
) -> Result<FetchedOutput> {
    chan.send(&ClientMsg::FetchOutput {
        path: path.to_string(),
    })
    .await?;
    chan.flush().await?;
    let info = match chan.recv().await? {
        AgentMsg::Output(info) => info,
        AgentMsg::Error { message } => bail!("the agent on {} failed: {message}", chan.host),
        other => bail!(
            "unexpected answer from the agent on {}: {other:?}",
            chan.host
        ),
    };
    if info.path != path {
        bail!(
            "the agent on {} sent '{}' when asked for '{path}'; refused",
            chan.host,
            info.path
        );
    }
    let dest: PathBuf = store.real_path(path)?;
    store.remove_stale(path)?;
    let announced = info.nar_size;
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(8);
    let unpack_dest = dest.clone();
    let unpacker = tokio::task::spawn_blocking(move || {
        let reader = ChannelReader {
            rx,
            buf: Vec::new(),
            pos: 0,
        };
        let mut decoder = zstd::stream::read::Decoder::new(reader)?;
        let limits = nsh_wire::nar::UnpackLimits {
            max_total_size: announced,
            ..Default::default()
        };
        let summary = nsh_wire::nar::unpack_with_limits(&mut decoder, &unpack_dest, &limits)?;
        // Anything after the NAR's end is not ours to ignore.
        let mut rest = [0u8; 1];
        if decoder.read(&mut rest)? != 0 {
            anyhow::bail!("data after the end of the NAR");
        }
        Ok::<_, anyhow::Error>(summary)
    });
    let mut tx = Some(tx);
    let recv_result: Result<()> = async {
        loop {
            match chan.recv().await? {
                AgentMsg::NarChunk(bytes) => {
                    if let Some(t) = &tx
                        && t.send(bytes).await.is_err()
                    {
                        // The unpacker stopped (refused the NAR); drain the rest.
                        tx = None;
                    }
                }
                AgentMsg::NarEnd => return Ok(()),
                AgentMsg::Error { message } => {
                    bail!("the agent on {} failed: {message}", chan.host)
                }
                other => bail!(
                    "unexpected message from the agent on {}: {other:?}",
                    chan.host
                ),
            }
        }
    }
    .await;
    drop(tx);
    let unpacked = unpacker.await.context("the NAR unpacker panicked")?;
    let cleanup = |e: anyhow::Error| {
        let _ = store.remove_stale(path);
        e
    };
    recv_result.map_err(cleanup)?;
    let summary = unpacked
        .with_context(|| format!("refused the NAR of '{path}' from {}", chan.host))
        .map_err(cleanup)?;
    let hex = hex::encode(summary.sha256);
    if summary.size != info.nar_size || hex != info.nar_hash.to_ascii_lowercase() {
        let _ = store.remove_stale(path);
        bail!(
            "the NAR of '{path}' from {} is corrupt: got {} bytes with sha256 {hex}, the \
             remote store recorded {} bytes with sha256 {}; nothing was registered",
            chan.host,
            summary.size,
            info.nar_size,
            info.nar_hash
        );
    }
    Ok(FetchedOutput {
        nar_sha256_hex: hex,
        nar_size: summary.size,
        info,
    })
}

/// Adapts a channel of chunks to `Read` for the blocking unpacker.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<Vec<u8>>,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos >= self.buf.len() {
            match self.rx.blocking_recv() {
                Some(chunk) => {
                    self.buf = chunk;
                    self.pos = 0;
                }
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
