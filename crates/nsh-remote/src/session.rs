//! One client connection: handshake, then requests in order.
//!
//! A reader thread takes frames off the socket, renews the lease and answers `Ping` at
//! once (so a client keeps the lease while a build or a NAR streams, or the worker waits on
//! a store lock or the node's daemon); everything else goes, in order, to this
//! connection's worker. The upload is flow-controlled (`ImportAck`, `IMPORT_WINDOW`), so
//! the worker's queue never fills and the reader never waits. An `Error` ends the
//! connection; the build does not end with it.

use std::io::{BufReader, BufWriter, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use nsh_wire::agent_protocol::{
    AgentMsg, BuildRequest, ClientMsg, IMPORT_WINDOW, PROTOCOL_VERSION,
};
use nsh_wire::codec;

use crate::build::{Build, Next};
use crate::import::Import;
use crate::log::log;
use crate::serve::Agent;
use crate::store_lock::UploadLock;
use crate::upload;

/// How long an unauthenticated connection may take to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(30);

/// Requests queued for the worker: the import window, plus room for the one request a
/// client may send beside it (a `Goodbye` after a failed upload).
const QUEUE: usize = IMPORT_WINDOW as usize + 4;

/// Takes frames off the socket, renews the lease and answers `Ping` at once. It never
/// waits for the worker: a client that sends more than the import window allows is cut off
/// rather than left unread (its pings would stay behind the data).
fn spawn_reader(
    conn: &Conn,
    mut reader: BufReader<UnixStream>,
    tx: SyncSender<ClientMsg>,
) -> thread::JoinHandle<()> {
    let (a, w, closed, id) = (
        Arc::clone(&conn.agent),
        Arc::clone(&conn.writer),
        Arc::clone(&conn.closed),
        conn.id,
    );
    thread::spawn(move || {
        loop {
            let error = match codec::read_frame::<ClientMsg>(&mut reader) {
                Ok(Some(ClientMsg::Ping)) => {
                    a.touch();
                    if send_on(&w, &AgentMsg::Pong).is_err() {
                        break;
                    }
                    continue;
                }
                Ok(Some(msg)) => {
                    a.touch();
                    match tx.try_send(msg) {
                        Ok(()) => continue,
                        Err(TrySendError::Disconnected(_)) => break,
                        Err(TrySendError::Full(_)) => format!(
                            "the client sent more than {QUEUE} requests ahead of the agent \
                             (import window {IMPORT_WINDOW})"
                        ),
                    }
                }
                Ok(None) => {
                    log!("connection {id}: client closed the connection");
                    break;
                }
                Err(e) => format!("bad frame: {e}"),
            };
            log!("connection {id}: {error}");
            let _ = send_on(&w, &AgentMsg::Error { message: error });
            break;
        }
        closed.store(true, Ordering::SeqCst);
    })
}

struct Conn {
    agent: Arc<Agent>,
    id: u64,
    writer: Arc<Mutex<BufWriter<UnixStream>>>,
    closed: Arc<AtomicBool>,
}

fn send_on(writer: &Mutex<BufWriter<UnixStream>>, msg: &AgentMsg) -> std::io::Result<()> {
    let mut w = writer.lock().unwrap_or_else(|p| p.into_inner());
    codec::write_frame(&mut *w, msg)?;
    w.flush()
}

impl Conn {
    fn send(&self, msg: &AgentMsg) -> Result<()> {
        send_on(&self.writer, msg).context("writing to the client")
    }
}

pub fn serve(agent: Arc<Agent>, stream: UnixStream, id: u64) {
    if let Err(e) = serve_inner(&agent, stream, id) {
        log!("connection {id}: {e:#}");
    }
}

fn serve_inner(agent: &Arc<Agent>, stream: UnixStream, id: u64) -> Result<()> {
    stream
        .set_read_timeout(Some(HELLO_TIMEOUT))
        .context("setting hello timeout")?;
    let mut reader =
        BufReader::with_capacity(256 << 10, stream.try_clone().context("cloning socket")?);
    let writer = Arc::new(Mutex::new(BufWriter::with_capacity(
        256 << 10,
        stream.try_clone().context("cloning socket")?,
    )));
    let first: Option<ClientMsg> = match codec::read_frame(&mut reader) {
        Ok(m) => m,
        Err(e) => {
            // Unauthenticated: say nothing beyond a generic refusal in our own log.
            log!("connection {id}: refused: unreadable hello: {e}");
            return Ok(());
        }
    };
    let Some(ClientMsg::Hello { version, token }) = first else {
        log!("connection {id}: refused: first message is not Hello");
        return Ok(());
    };
    if version != PROTOCOL_VERSION {
        let message = format!(
            "protocol version mismatch: client speaks {version}, agent speaks {PROTOCOL_VERSION}; \
             deploy matching nsh and nsh-remote builds"
        );
        log!("connection {id}: {message}");
        // Best effort: the client may already be gone.
        let _ = send_on(&writer, &AgentMsg::Error { message });
        return Ok(());
    }
    if !agent.token_matches(&token) {
        log!("connection {id}: refused: wrong token");
        return Ok(());
    }
    drop(token);
    if agent.is_exiting() {
        log!("connection {id}: refused: the agent is exiting");
        return Ok(());
    }
    agent.make_current(id, &stream);
    stream
        .set_read_timeout(None)
        .context("clearing hello timeout")?;
    crate::timing::mark("hello");
    log!("connection {id}: client authenticated");
    let conn = Conn {
        agent: Arc::clone(agent),
        id,
        writer,
        closed: Arc::new(AtomicBool::new(false)),
    };
    conn.send(&AgentMsg::Hello {
        version: PROTOCOL_VERSION,
        hostname: agent.hostname.clone(),
        nix_version: agent.nix_version.clone(),
        store: agent.store.clone(),
        lease_ms: u64::try_from(agent.lease.as_millis()).unwrap_or(u64::MAX),
    })?;

    let (tx, rx) = sync_channel::<ClientMsg>(QUEUE);
    let reader_thread = spawn_reader(&conn, reader, tx);
    let result = conn.work(rx);
    if let Err(e) = &result {
        log!("connection {id}: {e:#}");
        let _ = conn.send(&AgentMsg::Error {
            message: format!("{e:#}"),
        });
    }
    let _ = stream.shutdown(Shutdown::Both);
    let _ = reader_thread.join();
    if let Some(b) = agent.lock().build.clone() {
        b.detach(id);
    }
    agent.connection_closed(id);
    log!("connection {id}: ended");
    Ok(())
}

impl Conn {
    /// Handles requests until the client leaves; an `Err` is sent to the client.
    fn work(&self, rx: Receiver<ClientMsg>) -> Result<()> {
        let mut up = Upload::default();
        while let Ok(msg) = rx.recv() {
            if self.agent.is_exiting() {
                return Ok(());
            }
            match msg {
                ClientMsg::Hello { .. } => return Err(anyhow!("unexpected second Hello")),
                ClientMsg::Ping => self.send(&AgentMsg::Pong)?,
                ClientMsg::QueryMissing { paths } => self.query(&paths, &mut up)?,
                ClientMsg::ImportPath(info) => {
                    up.import(self)?.announce(info)?;
                    self.ack(&mut up)?;
                }
                ClientMsg::ImportChunk(data) => {
                    up.import(self)?.chunk(&data);
                    self.ack(&mut up)?;
                }
                ClientMsg::ImportEnd => {
                    let i = match up.import.take() {
                        Some(i) => i,
                        None => Import::start(
                            &self.agent.nix,
                            &self.agent.children,
                            self.agent.first_import.take(),
                        )?,
                    };
                    let paths = i.finish();
                    crate::timing::mark("import");
                    up = Upload::default();
                    self.send(&AgentMsg::Imported { paths: paths? })?;
                }
                ClientMsg::Build(req) => {
                    up = Upload::default();
                    self.build(&req)?
                }
                ClientMsg::FetchOutput { path } => self.fetch(&path)?,
                ClientMsg::Goodbye { collect_garbage } => {
                    drop(up);
                    self.goodbye(collect_garbage)
                }
            }
        }
        Ok(())
    }

    /// `QueryMissing`: under the store's upload lock (waiting for another job's upload to
    /// end), so the answer stays true until our own import ends; a GC waits for us from now.
    fn query(&self, paths: &[String], up: &mut Upload) -> Result<()> {
        *up = Upload::default();
        let locks = &self.agent.locks;
        locks.hold_gc_shared(&mut || self.waiting("another job's garbage collection"))?;
        let lock = locks.upload(&mut || self.waiting("another job's upload"))?;
        let missing = match self.agent.queries.missing(paths) {
            Some(m) => m,
            None => self.agent.nix.query_missing(paths)?,
        };
        crate::timing::mark("query");
        log!("query: {} of {} paths missing", missing.len(), paths.len());
        if !missing.is_empty() {
            up.lock = Some(lock);
        }
        self.send(&AgentMsg::Missing { paths: missing })
    }

    fn waiting(&self, what: &str) {
        log!("connection {}: waiting for {what} to this store", self.id);
        let reason = format!("{what} to the store on {}", self.agent.hostname);
        // Only news: a client that is gone finds out with the next message.
        let _ = self.send(&AgentMsg::Waiting { reason });
    }

    fn ack(&self, up: &mut Upload) -> Result<()> {
        up.consumed += 1;
        self.send(&AgentMsg::ImportAck {
            consumed: up.consumed,
        })
    }

    fn build(&self, req: &BuildRequest) -> Result<()> {
        let build = {
            let mut st = self.agent.lock();
            match &st.build {
                Some(b) if b.drv_path == req.drv_path => {
                    log!(
                        "connection {}: attaching to the build of {}",
                        self.id,
                        b.drv_path
                    );
                    Arc::clone(b)
                }
                Some(b) => {
                    return Err(anyhow!(
                        "this agent is already building {}; refusing {}",
                        b.drv_path,
                        req.drv_path
                    ));
                }
                None => {
                    let b = Build::start(&self.agent, req)?;
                    st.build = Some(Arc::clone(&b));
                    b
                }
            }
        };
        build.attach(self.id, req.log_offset);
        loop {
            if self.closed.load(Ordering::SeqCst) {
                build.detach(self.id);
                return Ok(());
            }
            match build.next(self.id) {
                Next::Log(bytes) => self.send(&AgentMsg::Log(bytes))?,
                Next::Gap(bytes) => self.send(&AgentMsg::LogGap { bytes })?,
                Next::Done(result) => {
                    build.detach(self.id);
                    log!(
                        "connection {}: build done, status {}, outputs {:?}",
                        self.id,
                        result.status,
                        result.outputs
                    );
                    return self.send(&AgentMsg::BuildDone(result));
                }
                Next::Detached => return Ok(()),
                Next::Idle => {}
            }
        }
    }

    fn fetch(&self, path: &str) -> Result<()> {
        let build = self.agent.lock().build.clone();
        let allowed = build
            .and_then(|b| b.result())
            .is_some_and(|r| r.status == 0 && r.outputs.iter().any(|o| o == path));
        if !allowed {
            return Err(anyhow!(
                "refusing to send {path}: not an output of a finished build here"
            ));
        }
        let mut send = |m: AgentMsg| self.send(&m);
        upload::send_output(
            &self.agent.nix,
            &self.agent.queries,
            &self.agent.children,
            path,
            &mut send,
        )
        .with_context(|| format!("sending {path}"))?;
        crate::timing::mark("output sent");
        Ok(())
    }

    fn goodbye(&self, collect_garbage: bool) -> ! {
        let agent = &self.agent;
        agent.begin_exit();
        crate::timing::mark("goodbye");
        log!(
            "connection {}: goodbye (collect garbage: {collect_garbage})",
            self.id
        );
        agent.queries.close();
        agent.children.terminate_all();
        // The GC root of the outputs lives in the directory: drop it first, so that the
        // collection takes the outputs too (the client has its copy).
        agent.remove_dir();
        if collect_garbage {
            collect(agent);
        }
        crate::timing::mark("cleaned up");
        let timings = crate::timing::all();
        log!(
            "timings (ms since start): {}",
            crate::timing::summary(&timings)
        );
        if let Err(e) = self.send(&AgentMsg::Bye { timings }) {
            log!("sending Bye: {e:#}");
        }
        log!("exit 0");
        std::process::exit(0)
    }
}

/// One upload of this connection: the upload lock from the query on, the import, and how
/// many import messages it consumed (for `ImportAck`). Dropped (lock released, import
/// abandoned) with the connection, or when the next request starts.
#[derive(Default)]
struct Upload {
    lock: Option<UploadLock>,
    import: Option<Import>,
    consumed: u64,
}

impl Upload {
    fn import(&mut self, conn: &Conn) -> Result<&mut Import> {
        if self.import.is_none() {
            self.import = Some(Import::start(
                &conn.agent.nix,
                &conn.agent.children,
                conn.agent.first_import.take(),
            )?);
            #[cfg(feature = "fault-injection")]
            crate::fault::stall_import();
        }
        self.import
            .as_mut()
            .ok_or_else(|| anyhow!("the import did not start"))
    }
}

/// `collect-garbage` at goodbye: only when no other agent holds the store's GC lock (their
/// inputs may have no GC root yet); the last one out collects.
fn collect(agent: &Agent) {
    match agent.locks.release_for_gc() {
        Ok(Some(_exclusive)) => {
            // Registered, so that a SIGTERM meanwhile stops it too.
            match agent.nix.run_registered(&agent.children, &["--gc"]) {
                Ok(out) => log!("nix-store --gc: {}", out.trim()),
                Err(e) => log!("nix-store --gc failed (ignored): {e:#}"),
            }
        }
        Ok(None) => log!(
            "not collecting garbage: another nsh job uses this store (the last one out collects)"
        ),
        Err(e) => log!("not collecting garbage: {e:#}"),
    }
}
