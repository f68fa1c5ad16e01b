//! One client connection: handshake, then requests in order.
//!
//! A reader thread takes frames off the socket, renews the lease and answers `Ping` at
//! once (so a client can keep the lease while a build or a NAR is streaming); everything
//! else goes, in order, to this connection's worker. An `Error` ends the connection; the
//! build does not end with it.

use std::io::{BufReader, BufWriter, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use nsh_wire::agent_protocol::{AgentMsg, BuildRequest, ClientMsg, PROTOCOL_VERSION};
use nsh_wire::codec;

use crate::build::{Build, Next};
use crate::import::Import;
use crate::log::log;
use crate::serve::Agent;
use crate::upload;

/// How long an unauthenticated connection may take to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(30);

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
    })?;

    let (tx, rx) = sync_channel::<ClientMsg>(16);
    let (a, w, closed) = (
        Arc::clone(agent),
        Arc::clone(&conn.writer),
        Arc::clone(&conn.closed),
    );
    let reader_thread = thread::spawn(move || {
        loop {
            match codec::read_frame::<ClientMsg>(&mut reader) {
                Ok(Some(msg)) => {
                    a.touch();
                    if matches!(msg, ClientMsg::Ping) {
                        if send_on(&w, &AgentMsg::Pong).is_err() {
                            break;
                        }
                    } else if tx.send(msg).is_err() {
                        break;
                    }
                }
                Ok(None) => {
                    log!("connection {id}: client closed the connection");
                    break;
                }
                Err(e) => {
                    log!("connection {id}: bad frame: {e}");
                    let _ = send_on(
                        &w,
                        &AgentMsg::Error {
                            message: format!("bad frame: {e}"),
                        },
                    );
                    break;
                }
            }
        }
        closed.store(true, Ordering::SeqCst);
    });

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
        // Import progress belongs to this connection and is dropped (aborted) with it.
        let mut import: Option<Import> = None;
        while let Ok(msg) = rx.recv() {
            if self.agent.is_exiting() {
                return Ok(());
            }
            match msg {
                ClientMsg::Hello { .. } => return Err(anyhow!("unexpected second Hello")),
                ClientMsg::Ping => self.send(&AgentMsg::Pong)?,
                ClientMsg::QueryMissing { paths } => {
                    let missing = self.agent.nix.query_missing(&paths)?;
                    log!("query: {} of {} paths missing", missing.len(), paths.len());
                    self.send(&AgentMsg::Missing { paths: missing })?;
                }
                ClientMsg::ImportPath(info) => {
                    if import.is_none() {
                        import = Some(Import::start(&self.agent.nix, &self.agent.children)?);
                    }
                    if let Some(i) = import.as_mut() {
                        i.announce(info)?;
                    }
                }
                ClientMsg::ImportChunk(data) => {
                    if import.is_none() {
                        import = Some(Import::start(&self.agent.nix, &self.agent.children)?);
                    }
                    if let Some(i) = import.as_mut() {
                        i.chunk(&data);
                    }
                }
                ClientMsg::ImportEnd => {
                    let i = match import.take() {
                        Some(i) => i,
                        None => Import::start(&self.agent.nix, &self.agent.children)?,
                    };
                    let paths = i.finish()?;
                    self.send(&AgentMsg::Imported { paths })?;
                }
                ClientMsg::Build(req) => self.build(&req)?,
                ClientMsg::FetchOutput { path } => self.fetch(&path)?,
                ClientMsg::Goodbye { collect_garbage } => self.goodbye(collect_garbage),
            }
        }
        Ok(())
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
                    let root = self.agent.dir.join("result");
                    let b = Build::start(&self.agent.nix, &self.agent.children, req, &root)?;
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
        upload::send_output(&self.agent.nix, &self.agent.children, path, &mut send)
            .with_context(|| format!("sending {path}"))
    }

    fn goodbye(&self, collect_garbage: bool) -> ! {
        let agent = &self.agent;
        agent.begin_exit();
        log!(
            "connection {}: goodbye (collect garbage: {collect_garbage})",
            self.id
        );
        agent.children.terminate_all();
        // The GC root of the outputs lives in the directory: drop it first, so that the
        // collection takes the outputs too (the client has its copy).
        agent.remove_dir();
        if collect_garbage {
            // Registered, so that a SIGTERM meanwhile stops it too.
            match agent.nix.run_registered(&agent.children, &["--gc"]) {
                Ok(out) => log!("nix-store --gc: {}", out.trim()),
                Err(e) => log!("nix-store --gc failed (ignored): {e:#}"),
            }
        }
        if let Err(e) = self.send(&AgentMsg::Bye) {
            log!("sending Bye: {e:#}");
        }
        log!("exit 0");
        std::process::exit(0)
    }
}
