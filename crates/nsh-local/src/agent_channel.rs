//! The channel to the agent: `ssh <host> <agent> connect <socket>` through the shared
//! master, carrying length-prefixed bincode frames (nsh_wire::codec) both ways.

use anyhow::{Context, Result, bail};
use nsh_wire::agent_protocol::{AgentMsg, ClientMsg, PROTOCOL_VERSION, keepalive_for};
use nsh_wire::codec;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openssh::{Child, ChildStdin, ChildStdout, Session, Stdio};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::sync::Mutex;

pub struct AgentChannel {
    // Kept alive for as long as the channel: dropping it ends the remote `connect`.
    _child: Child<Arc<Session>>,
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

/// What the agent said about itself.
#[derive(Debug, Clone)]
pub struct AgentInfo {
    pub hostname: String,
    pub nix_version: String,
    pub store: String,
}

impl AgentChannel {
    /// Connects to the agent serving `socket` on `host` and shakes hands with `token`.
    pub async fn open(
        session: Arc<Session>,
        host: &str,
        agent_path: &str,
        socket: &str,
        token: &str,
        wait_secs: u64,
    ) -> Result<(AgentChannel, AgentInfo)> {
        let mut child = Session::to_command(session, agent_path.to_string());
        child
            .arg("connect")
            .arg(socket)
            .arg("--wait-secs")
            .arg(wait_secs.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = child
            .spawn()
            .await
            .with_context(|| format!("cannot start the agent connection on {host}"))?;
        let stdin = child
            .stdin()
            .take()
            .context("no stdin for the agent channel")?;
        let stdout = child
            .stdout()
            .take()
            .context("no stdout for the agent channel")?;
        let mut chan = AgentChannel {
            _child: child,
            reader: BufReader::with_capacity(256 << 10, stdout),
            writer: Arc::new(Mutex::new(BufWriter::with_capacity(256 << 10, stdin))),
            keepalive: None,
            host: host.to_string(),
            hello_sent: Instant::now(),
        };
        chan.hello_sent = Instant::now();
        chan.send(&ClientMsg::Hello {
            version: PROTOCOL_VERSION,
            token: token.to_string(),
        })
        .await?;
        chan.flush().await?;
        match chan.recv().await? {
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
                         {PROTOCOL_VERSION}; this should not happen as the agent is uploaded \
                         by content — remove the state dir's agents/ directory"
                    );
                }
                // The agent ends the build if its client is silent for its lease. Waits
                // can be longer — a big import, another job's upload, a long build — so a
                // task pings throughout, whatever the rest of nsh is doing.
                chan.start_keepalive(keepalive_for(Duration::from_millis(lease_ms)));
                Ok((
                    chan,
                    AgentInfo {
                        hostname,
                        nix_version,
                        store,
                    },
                ))
            }
            AgentMsg::Error { message } => Err(AgentRefused {
                host: host.to_owned(),
                message,
            }
            .into()),
            other => bail!("the agent on {host} answered the handshake with {other:?}"),
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
