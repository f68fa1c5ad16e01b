//! Moving store paths up: the inputs the remote store lacks go as their NARs, back to back
//! in one zstd stream, each announced with its metadata from the local database (the agent
//! hands them to the remote Nix daemon, which checks every hash). Outputs come back
//! through `output_fetch`.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result, bail};
use nsh_wire::agent_protocol::{AgentMsg, CHUNK_SIZE, ClientMsg, IMPORT_WINDOW, PathInfo};
use nsh_wire::nar;

use crate::agent_channel::AgentChannel;
use crate::local_store::LocalStore;
use crate::nix_log::{ACT_COPY_PATH, ACT_COPY_PATHS, Activity, LVL_TALKATIVE, Ui};
use crate::phases::Phases;

/// What the upload needs from the local store, read while the job waits in the queue:
/// the closure to offer and its metadata, dependencies first.
#[derive(Debug, Default, Clone)]
pub struct Inputs {
    pub closure: Vec<String>,
    pub infos: Vec<PathInfo>,
}

impl Inputs {
    /// The closure of `roots` and its metadata (blocking: two `nix-store` calls).
    pub fn read(store: &LocalStore, roots: &[String]) -> Result<Inputs> {
        let closure = store.requisites(roots)?;
        let infos = store.path_infos(&closure)?;
        Ok(Inputs { closure, infos })
    }
}

/// What an upload moved, for the user and for tests.
#[derive(Debug, Default, Clone, Copy)]
pub struct UploadStats {
    pub closure: usize,
    pub missing: usize,
    pub raw_bytes: u64,
    pub sent_bytes: u64,
}

/// Sends the paths of `closure` the remote store lacks (one round trip to find out; the
/// agent answers it under the store's upload lock, so what another job is sending now is
/// found present afterwards instead of sent twice).
pub async fn upload_missing(
    chan: &mut AgentChannel,
    store: &LocalStore,
    ui: &Ui,
    phases: &Phases,
    inputs: &Inputs,
) -> Result<UploadStats> {
    let mut stats = UploadStats {
        closure: inputs.closure.len(),
        ..Default::default()
    };
    let missing: HashSet<String> = query_missing(chan, ui, inputs.closure.clone())
        .await?
        .into_iter()
        .collect();
    phases.mark("input query");
    stats.missing = missing.len();
    if missing.is_empty() {
        return Ok(stats);
    }
    let sources = missing_sources(store, inputs, &missing, &chan.host)?;
    stats.raw_bytes = sources.iter().map(|(info, _)| info.nar_size).sum();
    let mut progress = UploadProgress::start(ui, &chan.host, stats.missing as u64, stats.raw_bytes);
    // NAR serialisation and compression run on a blocking thread, so they overlap with
    // sending the previous chunks.
    let fed = Arc::new(AtomicU64::new(0));
    let (tx, mut rx) = tokio::sync::mpsc::channel::<ClientMsg>(4);
    let producer = {
        let fed = Arc::clone(&fed);
        tokio::task::spawn_blocking(move || produce_import_stream(sources, &fed, tx))
    };
    let mut window = Window::default();
    while let Some(msg) = rx.recv().await {
        match &msg {
            ClientMsg::ImportPath(info) => progress.next_path(&info.path, info.nar_size),
            ClientMsg::ImportChunk(data) => {
                stats.sent_bytes += data.len() as u64;
                progress.fed(fed.load(Ordering::Relaxed));
            }
            _ => {}
        }
        window.make_room(chan).await?;
        chan.send(&msg).await?;
        window.sent += 1;
    }
    progress.end_path();
    producer
        .await
        .context("the thread that reads the inputs ended abnormally")??;
    chan.send(&ClientMsg::ImportEnd).await?;
    chan.flush().await?;
    wait_imported(chan).await?;
    phases.mark("upload");
    Ok(stats)
}

/// The metadata and real paths of the `missing` inputs, dependencies first (the whole
/// closure's metadata is ordered).
fn missing_sources(
    store: &LocalStore,
    inputs: &Inputs,
    missing: &HashSet<String>,
    host: &str,
) -> Result<Vec<(PathInfo, PathBuf)>> {
    let infos: Vec<&PathInfo> = inputs
        .infos
        .iter()
        .filter(|i| missing.contains(&i.path))
        .collect();
    if infos.len() != missing.len() {
        bail!(
            "the local store's metadata lists {} of the {} inputs {host} lacks",
            infos.len(),
            missing.len(),
        );
    }
    infos
        .into_iter()
        .map(|info| Ok((info.clone(), store.real_path(&info.path)?)))
        .collect()
}

/// Reads the agent's acks after `ImportEnd` until it says the import is complete.
async fn wait_imported(chan: &mut AgentChannel) -> Result<()> {
    loop {
        match chan.recv().await? {
            AgentMsg::Imported { .. } => return Ok(()),
            AgentMsg::ImportAck { .. } => {}
            AgentMsg::Error { message } => bail!(import_failed(&chan.host, &message)),
            other => bail!(
                "unexpected answer from the agent on {}: {other:?}",
                chan.host
            ),
        }
    }
}

/// `QueryMissing` → the paths of `closure` the remote store lacks. The agent may first
/// say that it waits (for another job's upload to the same store): that goes to the user.
async fn query_missing(
    chan: &mut AgentChannel,
    ui: &Ui,
    closure: Vec<String>,
) -> Result<Vec<String>> {
    chan.send(&ClientMsg::QueryMissing {
        paths: closure.clone(),
    })
    .await?;
    chan.flush().await?;
    let lacking: HashSet<String> = loop {
        match chan.recv().await? {
            AgentMsg::Missing { paths } => break paths.into_iter().collect(),
            AgentMsg::Waiting { reason } => ui.info(&format!("nsh: waiting for {reason}")),
            AgentMsg::Error { message } => bail!("the agent on {} failed: {message}", chan.host),
            other => bail!(
                "unexpected answer from the agent on {}: {other:?}",
                chan.host
            ),
        }
    };
    // Only what we offered: the agent is not trusted to name paths.
    Ok(closure
        .into_iter()
        .filter(|p| lacking.contains(p))
        .collect())
}

/// Credit for the upload: at most `IMPORT_WINDOW` import messages the agent has not
/// acknowledged are in flight, so its queue never fills and the pings behind them are read
/// at once, however long its import waits (on the node's daemon, say).
#[derive(Default)]
struct Window {
    sent: u64,
    acked: u64,
}

impl Window {
    async fn make_room(&mut self, chan: &mut AgentChannel) -> Result<()> {
        if self.sent < self.acked + IMPORT_WINDOW {
            return Ok(());
        }
        // What is buffered must reach the agent, or its acks never come.
        chan.flush().await?;
        while self.sent >= self.acked + IMPORT_WINDOW {
            match chan.recv().await? {
                AgentMsg::ImportAck { consumed } => self.acked = self.acked.max(consumed),
                AgentMsg::Error { message } => bail!(import_failed(&chan.host, &message)),
                other => bail!(
                    "unexpected message from the agent on {} during the upload: {other:?}",
                    chan.host
                ),
            }
        }
        Ok(())
    }
}

fn import_failed(host: &str, message: &str) -> String {
    let hint = if message.contains("hash mismatch") {
        "; the local copy of that path does not match its recorded hash: check it \
         with 'nix-store --verify --check-contents' (--repair fixes it)"
    } else if message.contains("lacks a signature") || message.contains("lacks a valid signature") {
        "; the job's user is not trusted by the Nix daemon on the node, which then \
         accepts only signed paths: add that user to trusted-users in the nodes' \
         nix.conf, or set remote-store to a store that user owns (e.g. \
         /scratch/<user>/nix)"
    } else {
        ""
    };
    format!("adding the inputs to the store on {host} failed: {message}{hint}")
}

/// An upload in Nix's progress display, reported as Nix reports its own copies: one
/// copy-paths activity for the lot (paths done, bytes expected) and one copy-path activity
/// per path (its bytes). Does nothing before `# accept` (no activities then).
struct UploadProgress<'a> {
    ui: &'a Ui,
    host: String,
    all: Option<Activity>,
    paths: u64,
    paths_done: u64,
    /// The path being read: its activity, where its NAR starts in the stream, its size.
    current: Option<(Activity, u64, u64)>,
    /// Where the next path's NAR starts in the stream.
    offset: u64,
}

impl<'a> UploadProgress<'a> {
    fn start(ui: &'a Ui, host: &str, paths: u64, bytes: u64) -> Self {
        let all = ui.activity(
            LVL_TALKATIVE,
            ACT_COPY_PATHS,
            &format!("copying {paths} paths to '{host}'"),
            serde_json::json!([]),
        );
        if let Some(a) = &all {
            a.set_expected(ACT_COPY_PATH, bytes);
            a.progress(0, paths);
        }
        UploadProgress {
            ui,
            host: host.to_owned(),
            all,
            paths,
            paths_done: 0,
            current: None,
            offset: 0,
        }
    }

    /// The stream moves on to `path` (the previous one was read whole).
    fn next_path(&mut self, path: &str, size: u64) {
        self.end_path();
        let act = self.ui.activity(
            LVL_TALKATIVE,
            ACT_COPY_PATH,
            &format!("copying path '{path}' to '{}'", self.host),
            serde_json::json!([path, "local", self.host]),
        );
        self.current = act.map(|a| (a, self.offset, size));
        self.offset += size;
    }

    /// `total` NAR bytes of the whole upload have been read.
    fn fed(&self, total: u64) {
        if let Some((a, start, size)) = &self.current {
            a.progress(total.saturating_sub(*start).min(*size), *size);
        }
    }

    fn end_path(&mut self) {
        if let Some((a, _, size)) = self.current.take() {
            a.progress(size, size);
            self.paths_done += 1;
            if let Some(all) = &self.all {
                all.progress(self.paths_done, self.paths);
            }
        }
    }
}

/// Announces each path, then feeds its NAR into one zstd stream cut into chunks.
fn produce_import_stream(
    sources: Vec<(PathInfo, PathBuf)>,
    fed: &AtomicU64,
    tx: tokio::sync::mpsc::Sender<ClientMsg>,
) -> Result<()> {
    let sink = ChunkSender {
        tx,
        buf: Vec::with_capacity(CHUNK_SIZE),
    };
    let mut encoder = nsh_wire::compression::encoder(sink)?;
    for (info, real) in sources {
        encoder
            .get_mut()
            .send(ClientMsg::ImportPath(info.clone()))?;
        let mut counted = CountingWriter {
            inner: &mut encoder,
            n: 0,
            total: fed,
        };
        nar::dump(&real, &mut counted)
            .with_context(|| format!("reading {} for the upload", real.display()))?;
        if counted.n != info.nar_size {
            bail!(
                "{} serialises to {} bytes but the store's database says {}: the local \
                 copy was changed; check it with 'nix-store --verify --check-contents'",
                info.path,
                counted.n,
                info.nar_size
            );
        }
    }
    let mut sink = encoder.finish()?;
    sink.send_buffered()?;
    Ok(())
}

/// Cuts what is written into `ImportChunk` messages of at most [`CHUNK_SIZE`] bytes.
struct ChunkSender {
    tx: tokio::sync::mpsc::Sender<ClientMsg>,
    buf: Vec<u8>,
}

impl ChunkSender {
    fn send(&mut self, msg: ClientMsg) -> std::io::Result<()> {
        self.tx
            .blocking_send(msg)
            .map_err(|_| std::io::Error::other("the upload was abandoned"))
    }

    fn send_buffered(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK_SIZE));
        self.send(ClientMsg::ImportChunk(chunk))
    }
}

impl std::io::Write for ChunkSender {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(CHUNK_SIZE - self.buf.len());
        self.buf
            .extend_from_slice(data.get(..n).unwrap_or_default());
        if self.buf.len() >= CHUNK_SIZE {
            self.send_buffered()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Counts what goes through: `n` for this path, `total` for the whole upload.
struct CountingWriter<'a, W> {
    inner: W,
    n: u64,
    total: &'a AtomicU64,
}

impl<W: std::io::Write> std::io::Write for CountingWriter<'_, W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(data)?;
        self.n += n as u64;
        self.total.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
