//! Fetching one output: its NAR comes from the agent zstd-compressed, is unpacked under a
//! temporary name in the store directory ([`crate::staging`]) while its sha256, its size
//! and, for a fixed output, its output hash are computed, and is checked against what the
//! agent announced and what the `.drv` promises. Only the caller renames it into place,
//! once every output of the build passed; on any failure the temporary tree is removed.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result, bail};
use nsh_wire::agent_protocol::{AgentMsg, ClientMsg, PathInfo};
use nsh_wire::fixed_output::{FixedOutputHash, FodError};
use nsh_wire::nar::{Checked, ContentHash, UnpackLimits};

use crate::agent_channel::AgentChannel;
use crate::local_store::LocalStore;
use crate::nix_log::{ACT_COPY_PATH, Activity, LVL_TALKATIVE, Ui};
use crate::staging::Staged;

/// What the hook knows of an output before fetching it (from the local `.drv`).
#[derive(Debug, Clone, Copy)]
pub struct Wanted<'a> {
    pub path: &'a str,
    /// The output's name (`out`, `dev`, …).
    pub output: &'a str,
    pub drv_path: &'a str,
    /// Set for a fixed output: the hash its contents must have.
    pub fixed: Option<&'a FixedOutputHash>,
}

/// A downloaded, unpacked and verified output, not yet in place.
#[derive(Debug)]
pub struct FetchedOutput {
    pub info: PathInfo,
    pub nar_sha256_hex: String,
    pub nar_size: u64,
    /// The `ca` to record (fixed outputs).
    pub ca: Option<String>,
    /// The unpacked tree; `None` once it was moved to the store path.
    pub staged: Option<Staged>,
}

/// Fetches one output's NAR and unpacks it under a temporary name; see the module doc.
pub async fn fetch_output(
    chan: &mut AgentChannel,
    store: &LocalStore,
    ui: &Ui,
    want: Wanted<'_>,
) -> Result<FetchedOutput> {
    let path = want.path;
    let info = request(chan, path).await?;
    let base = store
        .real_path(path)?
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .with_context(|| format!("'{path}' has no base name"))?;
    let staged = Staged::new(&store.real_store_dir, &base)?;
    let act = ui.activity(
        LVL_TALKATIVE,
        ACT_COPY_PATH,
        &format!("copying path '{path}' from '{}'", chan.host),
        serde_json::json!([path, chan.host, "local"]),
    );
    let content = want
        .fixed
        .map_or(ContentHash::None, FixedOutputHash::content_hash);
    let checked = receive_unpacking(chan, &staged, info.nar_size, content, act.as_ref())
        .await
        .with_context(|| format!("refused the NAR of '{path}' from {}", chan.host))?;
    let hex = hex::encode(checked.nar.sha256);
    if checked.nar.size != info.nar_size || hex != info.nar_hash.to_ascii_lowercase() {
        bail!(
            "the NAR of '{path}' from {} is corrupt: got {} bytes with sha256 {hex}, the \
             remote store recorded {} bytes with sha256 {}; nothing was registered",
            chan.host,
            checked.nar.size,
            info.nar_size,
            info.nar_hash
        );
    }
    let ca = match want.fixed {
        Some(fixed) => {
            check_fixed(fixed, &checked, &want)?;
            Some(fixed.ca())
        }
        None => None,
    };
    if let Some(a) = &act {
        a.progress(checked.nar.size, info.nar_size);
    }
    Ok(FetchedOutput {
        nar_sha256_hex: hex,
        nar_size: checked.nar.size,
        info,
        ca,
        staged: Some(staged),
    })
}

/// The output hash check, in Nix's words plus the output's name and path.
fn check_fixed(fixed: &FixedOutputHash, checked: &Checked, want: &Wanted<'_>) -> Result<()> {
    let (drv, out, path) = (want.drv_path, want.output, want.path);
    match fixed.verify(checked.root, checked.content.as_ref()) {
        Ok(()) => Ok(()),
        Err(FodError::Mismatch { specified, got }) => bail!(
            "hash mismatch in fixed-output derivation '{drv}', output '{out}' ('{path}'):\n  \
             specified: {specified}\n     got:    {got}\nnothing was registered"
        ),
        Err(e) => bail!(
            "output '{out}' ('{path}') of fixed-output derivation '{drv}' refused: {e}; \
             nothing was registered"
        ),
    }
}

/// `FetchOutput{path}` → `Output(PathInfo)`, which must name that path.
async fn request(chan: &mut AgentChannel, path: &str) -> Result<PathInfo> {
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
    Ok(info)
}

/// Receives `NarChunk`s up to `NarEnd` while a blocking task decompresses and unpacks
/// them at `staged.tree()`, limited to the `announced` size.
async fn receive_unpacking(
    chan: &mut AgentChannel,
    staged: &Staged,
    announced: u64,
    content: ContentHash,
    act: Option<&Activity>,
) -> Result<Checked> {
    let unpacked_bytes = Arc::new(AtomicU64::new(0));
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(8);
    let dest = staged.tree();
    let counter = Arc::clone(&unpacked_bytes);
    let unpacker = tokio::task::spawn_blocking(move || {
        let reader = ChannelReader {
            rx,
            buf: Vec::new(),
            pos: 0,
        };
        let mut decoder = CountingReader {
            inner: nsh_wire::compression::read_decoder(reader)?,
            total: counter,
        };
        let limits = UnpackLimits {
            max_total_size: announced,
            ..Default::default()
        };
        let checked = nsh_wire::nar::unpack_checked(&mut decoder, &dest, &limits, content)?;
        // Anything after the NAR's end is not ours to ignore.
        let mut rest = [0u8; 1];
        if decoder.read(&mut rest)? != 0 {
            anyhow::bail!("data after the end of the NAR");
        }
        Ok::<_, anyhow::Error>(checked)
    });
    let mut tx = Some(tx);
    let received: Result<()> = async {
        loop {
            match chan.recv().await? {
                AgentMsg::NarChunk(bytes) => {
                    if let Some(a) = act {
                        let done = unpacked_bytes.load(Ordering::Relaxed);
                        a.progress(done.min(announced), announced);
                    }
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
    received?;
    unpacked
}

/// Counts the bytes read through it into `total`.
struct CountingReader<R> {
    inner: R,
    total: Arc<AtomicU64>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // The decoder's own errors (a corrupt frame, a window past the bound) say so, rather
        // than surfacing as whatever NAR token was being read.
        let n = self.inner.read(buf).map_err(|e| {
            std::io::Error::new(e.kind(), format!("the zstd stream is unusable: {e}"))
        })?;
        self.total.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
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
