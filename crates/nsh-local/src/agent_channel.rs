//! The channel to the agent: `ssh <host> <agent> connect <socket>` through the shared
//! master, carrying length-prefixed bincode frames (nsh_wire::codec) both ways.

use anyhow::{Context, Result, bail};
use nsh_wire::agent_protocol::{AgentMsg, ClientMsg, PROTOCOL_VERSION, keepalive_for};
use nsh_wire::codec;

use crate::agent_deploy;
use crate::job_script::JobFiles;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openssh::{Child, ChildStdin, ChildStdout, Session, Stdio};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::sync::Mutex;

pub struct AgentChannel {
    // Kept alive for as long as the channel: dropping it ends the remote `connect`.
    child: Option<Child<Arc<Session>>>,
    /// The first bytes of the remote command's stderr (why it ended, if it did), and the
    /// task that reads it.
    stderr: Arc<std::sync::Mutex<Vec<u8>>>,
    stderr_reader: Option<tokio::task::JoinHandle<()>>,
    reader: BufReader<ChildStdout>,
    writer: Arc<Mutex<BufWriter<ChildStdin>>>,
    keepalive: Option<tokio::task::JoinHandle<()>>,
    pub host: String,
    /// When the `Hello` went: places the agent's own timings on nsh's clock.
    pub hello_sent: Instant,
}

impl Drop for AgentChannel {
    fn drop(&mut self) {
        if let Some(k) = self.keepalive.take() {
            k.abort();
        }
        if let Some(r) = self.stderr_reader.take() {
            r.abort();
        }
    }
}

/// The channel broke (SSH dropped, master or agent killed): the build may still be going
/// on the node, so this is worth a reconnect, unlike an error the agent reported.
#[derive(Debug, thiserror::Error)]
#[error("lost the connection to the agent on {host} ({detail})")]
pub struct ChannelLost {
    pub host: String,
    pub detail: String,
}

/// The agent answered the handshake with an error: it cannot serve this build at all (it
/// cannot run the node's Nix, or speaks another protocol). Reconnecting or a fresh job on
/// the same setup would meet the same answer.
#[derive(Debug, thiserror::Error)]
#[error("the agent on {host} refused: {message}")]
pub struct AgentRefused {
    pub host: String,
    pub message: String,
}

/// The agent binary is not in the state dir yet (a first build there, or a new nsh):
/// upload it and connect again.
#[derive(Debug, thiserror::Error)]
#[error("the agent is not on {host} yet")]
pub struct AgentMissing {
    pub host: String,
}

/// How to reach the agent.
pub enum Connect<'a> {
    /// Run its `connect`: it is known to be in place (a reconnect, or just uploaded).
    Agent { wait_secs: u64 },
    /// Check the state dir and look for the agent first, in the same SSH command
    /// (`agent_deploy::connect_script`); [`AgentMissing`] if it is not there.
    Checked { agent_file: &'a str, wait_secs: u64 },
}

/// How much of the remote command's stderr is kept.
const STDERR_KEPT: usize = 16 << 10;

/// What the agent said about itself.
#[derive(Debug, Clone)]
pub struct AgentInfo {
    pub hostname: String,
    pub nix_version: String,
    pub store: String,
}

/// The SSH command that reaches the agent's socket: the agent's `connect` itself, or
/// (`Checked`) a shell that first makes sure the state dir and the agent are there.
fn connect_command(
    session: Arc<Session>,
    files: &JobFiles,
    how: Connect<'_>,
) -> openssh::OwningCommand<Arc<Session>> {
    match how {
        Connect::Agent { wait_secs } => {
            let mut c = Session::to_command(session, files.agent.clone());
            c.arg("connect")
                .arg(&files.socket)
                .arg("--wait-secs")
                .arg(wait_secs.to_string());
            c
        }
        Connect::Checked {
            agent_file,
            wait_secs,
        } => {
            let mut c = Session::to_command(session, "sh".to_string());
            c.arg("-c")
                .arg(agent_deploy::connect_script())
                .arg("nsh-connect")
                .arg(&files.state)
                .arg(agent_file)
                .arg(&files.socket)
                .arg(wait_secs.to_string());
            c
        }
    }
}

/// Keeps the first [`STDERR_KEPT`] bytes of the connection's stderr, for errors.
async fn keep_stderr(mut from: openssh::ChildStderr, kept: Arc<std::sync::Mutex<Vec<u8>>>) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 {
            return;
        }
        let mut k = kept.lock().unwrap_or_else(|p| p.into_inner());
        let room = STDERR_KEPT.saturating_sub(k.len());
        k.extend_from_slice(buf.get(..n.min(room)).unwrap_or_default());
    }
}

/// The agent's answer to `Hello`: what it told about itself and its lease, or why not.
fn hello_answer(host: &str, answer: AgentMsg) -> Result<(AgentInfo, Duration)> {
    match answer {
        AgentMsg::Hello {
            version,
            hostname,
            nix_version,
            store,
            lease_ms,
        } => {
            if version != PROTOCOL_VERSION {
                bail!(
                    "the agent on {host} speaks protocol {version}, nsh speaks \
                     {PROTOCOL_VERSION}; this should not happen as the agent is uploaded by \
                     content — remove the state dir's agents/ directory"
                );
            }
            let info = AgentInfo {
                hostname,
                nix_version,
                store,
            };
            Ok((info, Duration::from_millis(lease_ms)))
        }
        AgentMsg::Error { message } => Err(AgentRefused {
            host: host.to_owned(),
            message,
        }
        .into()),
        other => bail!("the agent on {host} answered the handshake with {other:?}"),
    }
}

impl AgentChannel {
    /// Connects to the agent serving `socket` on `host` and shakes hands with `token`.
    pub async fn open(
        session: Arc<Session>,
        host: &str,
        files: &JobFiles,
        how: Connect<'_>,
        token: &str,
    ) -> Result<(AgentChannel, AgentInfo)> {
        let checked = matches!(how, Connect::Checked { .. });
        let mut cmd = connect_command(session, files, how);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .await
            .with_context(|| format!("cannot start the agent connection on {host}"))?;
        let stderr = Arc::new(std::sync::Mutex::new(Vec::new()));
        let stderr_reader = child
            .stderr()
            .take()
            .map(|from| tokio::spawn(keep_stderr(from, Arc::clone(&stderr))));
        let stdin = child
            .stdin()
            .take()
            .context("no stdin for the agent channel")?;
        let stdout = child
            .stdout()
            .take()
            .context("no stdout for the agent channel")?;
        let mut chan = AgentChannel {
            child: Some(child),
            stderr,
            stderr_reader,
            reader: BufReader::with_capacity(256 << 10, stdout),
            writer: Arc::new(Mutex::new(BufWriter::with_capacity(256 << 10, stdin))),
            keepalive: None,
            host: host.to_string(),
            hello_sent: Instant::now(),
        };
        chan.hello_sent = Instant::now();
        let answer = chan.handshake(token).await;
        let answer = match (answer, checked) {
            (Ok(a), _) => a,
            (Err(e), true) if e.is::<ChannelLost>() => return Err(chan.why_ended(e, files).await),
            (Err(e), _) => return Err(e),
        };
        let (info, lease) = hello_answer(host, answer)?;
        // The agent ends the build if its client is silent for its lease. Waits can be
        // longer — a big import, another job's upload, a long build — so a task pings
        // throughout, whatever the rest of nsh is doing.
        chan.start_keepalive(keepalive_for(lease));
        Ok((chan, info))
    }

    async fn handshake(&mut self, token: &str) -> Result<AgentMsg> {
        self.send(&ClientMsg::Hello {
            version: PROTOCOL_VERSION,
            token: token.to_string(),
        })
        .await?;
        self.flush().await?;
        self.recv().await
    }

    /// The checked connect ended before the handshake: its exit status says whether the
    /// agent is missing ([`AgentMissing`]) or the state dir is unusable; otherwise `lost`.
    async fn why_ended(&mut self, lost: anyhow::Error, files: &JobFiles) -> anyhow::Error {
        let Some(child) = self.child.take() else {
            return lost;
        };
        let code = match tokio::time::timeout(Duration::from_secs(5), child.wait()).await {
            Ok(Ok(status)) => status.code(),
            _ => return lost,
        };
        if let Some(reader) = self.stderr_reader.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), reader).await;
        }
        let stderr = self
            .stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match code {
            // The agent's own `connect` ended (it printed why).
            Some(0..=2) | None => {
                let said = String::from_utf8_lossy(&stderr).trim().to_owned();
                if said.is_empty() {
                    lost
                } else {
                    lost.context(said)
                }
            }
            _ => match agent_deploy::probe_verdict(code, &stderr, &self.host, files) {
                Ok(_) => AgentMissing {
                    host: self.host.clone(),
                }
                .into(),
                Err(e) => e,
            },
        }
    }

    fn start_keepalive(&mut self, every: Duration) {
        let writer = self.writer.clone();
        self.keepalive = Some(tokio::spawn(async move {
            let Ok(ping) = codec::encode_frame(&ClientMsg::Ping) else {
                return;
            };
            loop {
                tokio::time::sleep(every).await;
                let mut w = writer.lock().await;
                if w.write_all(&ping).await.is_err() || w.flush().await.is_err() {
                    return;
                }
            }
        }));
    }

    pub async fn send(&mut self, msg: &ClientMsg) -> Result<()> {
        let frame = codec::encode_frame(msg)?;
        let result = self.writer.lock().await.write_all(&frame).await;
        result.map_err(|e| self.lost(e))
    }

    fn lost(&self, e: std::io::Error) -> anyhow::Error {
        ChannelLost {
            host: self.host.clone(),
            detail: e.to_string(),
        }
        .into()
    }

    pub async fn flush(&mut self) -> Result<()> {
        let result = self.writer.lock().await.flush().await;
        result.map_err(|e| self.lost(e))
    }

    /// Next message from the agent; a closed channel is an error (the agent always ends
    /// with `Bye` or `Error`).
    pub async fn recv(&mut self) -> Result<AgentMsg> {
        loop {
            match self.recv_any().await? {
                AgentMsg::Pong => continue,
                other => return Ok(other),
            }
        }
    }

    async fn recv_any(&mut self) -> Result<AgentMsg> {
        let mut header = [0u8; 4];
        self.reader
            .read_exact(&mut header)
            .await
            .map_err(|e| self.lost(e))?;
        let len = codec::frame_len(header)
            .with_context(|| format!("garbage from the agent on {}", self.host))?;
        let mut body = vec![0u8; len];
        self.reader
            .read_exact(&mut body)
            .await
            .map_err(|e| self.lost(e))?;
        codec::decode_body(&body)
            .with_context(|| format!("malformed message from the agent on {}", self.host))
    }
}
