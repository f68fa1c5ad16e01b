//! A scripted client for testing the agent against real Nix: speaks the agent protocol
//! through a command that bridges to the socket (normally `ssh node nsh-remote connect …`,
//! in the testbed `scripts/testbed exec node1 -- nsh-remote connect …`).
//!
//! `drive --connect 'CMD' --token T --drv /nix/store/…drv [--closure FILE] [--export FILE]`
//! queries which closure paths are missing, imports the export stream, builds, fetches
//! every output, checks each NAR's sha256 and size against what the agent announced, and
//! says goodbye. `--reattach-after SECS` drops the connection that long into the build and
//! reconnects, to exercise the backlog replay.

use std::io::{BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use nsh_wire::agent_protocol::{AgentMsg, BuildRequest, CHUNK_SIZE, ClientMsg, PROTOCOL_VERSION};
use nsh_wire::codec;
use sha2::{Digest, Sha256};

#[derive(Parser)]
struct Args {
    /// Shell command whose stdin/stdout reach the agent socket.
    #[arg(long)]
    connect: String,
    /// The agent's token (default: env NSH_AGENT_TOKEN).
    #[arg(long)]
    token: Option<String>,
    #[arg(long)]
    drv: String,
    /// Output names to build (default: all).
    #[arg(long)]
    output: Vec<String>,
    /// File listing the closure's store paths, one per line.
    #[arg(long)]
    closure: Option<PathBuf>,
    /// `nix-store --export` stream of the closure.
    #[arg(long)]
    export: Option<PathBuf>,
    /// NAME=VALUE passed as --option to the remote realise.
    #[arg(long)]
    option: Vec<String>,
    /// Drop the connection this many seconds into the build, then reconnect.
    #[arg(long)]
    reattach_after: Option<u64>,
    /// Write fetched NARs here as <name>.nar.
    #[arg(long)]
    out_dir: Option<PathBuf>,
    /// Send a wrong token first and check that the agent closes the connection.
    #[arg(long)]
    try_bad_token: bool,
    #[arg(long)]
    gc: bool,
    /// Do not say goodbye (leave the agent to its lease).
    #[arg(long)]
    no_goodbye: bool,
}

struct Conn {
    child: Child,
    tx: Arc<Mutex<ChildStdin>>,
    rx: BufReader<ChildStdout>,
}

impl Conn {
    fn open(cmd: &str, token: &str) -> Result<(Conn, AgentMsg)> {
        let mut child = Command::new("sh")
            .args(["-c", cmd])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("spawning connect command")?;
        let tx = Arc::new(Mutex::new(child.stdin.take().context("stdin")?));
        let rx = BufReader::new(child.stdout.take().context("stdout")?);
        let mut c = Conn { child, tx, rx };
        c.send(&ClientMsg::Hello {
            version: PROTOCOL_VERSION,
            token: token.to_owned(),
        })?;
        let hello = c.recv()?;
        Ok((c, hello))
    }

    fn send(&self, m: &ClientMsg) -> Result<()> {
        let mut w = self.tx.lock().unwrap();
        codec::write_frame(&mut *w, m)?;
        w.flush()?;
        Ok(())
    }

    /// Next message that is not a Pong.
    fn recv(&mut self) -> Result<AgentMsg> {
        loop {
            match codec::read_frame::<AgentMsg>(&mut self.rx)? {
                Some(AgentMsg::Pong) => continue,
                Some(AgentMsg::Error { message }) => bail!("agent error: {message}"),
                Some(m) => return Ok(m),
                None => bail!("agent closed the connection"),
            }
        }
    }

    fn keepalive(&self) {
        let tx = Arc::clone(&self.tx);
        thread::spawn(move || {
            loop {
                thread::sleep(Duration::from_secs(5));
                let Ok(mut w) = tx.lock() else { return };
                if codec::write_frame(&mut *w, &ClientMsg::Ping)
                    .and_then(|()| w.flush())
                    .is_err()
                {
                    return;
                }
            }
        });
    }

    fn close(mut self) {
        drop(self.tx);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn main() -> Result<()> {
    let mut a = Args::parse();
    if a.token.is_none() {
        a.token = std::env::var("NSH_AGENT_TOKEN").ok();
    }
    let token = a
        .token
        .clone()
        .context("no token: pass --token or set NSH_AGENT_TOKEN")?;
    let t0 = Instant::now();
    if a.try_bad_token {
        match Conn::open(&a.connect, "wrong-token") {
            Err(e) => println!("bad token refused: {e:#}"),
            Ok((_, m)) => bail!("agent accepted a wrong token: {m:?}"),
        }
    }
    let (mut c, hello) = Conn::open(&a.connect, &token)?;
    println!("hello: {hello:?} ({:?})", t0.elapsed());
    c.keepalive();

    if let Some(f) = &a.closure {
        let paths: Vec<String> = std::fs::read_to_string(f)?
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        let t = Instant::now();
        c.send(&ClientMsg::QueryMissing {
            paths: paths.clone(),
        })?;
        match c.recv()? {
            AgentMsg::Missing { paths: m } => {
                println!(
                    "missing: {} of {} ({:?})",
                    m.len(),
                    paths.len(),
                    t.elapsed()
                )
            }
            m => bail!("expected Missing, got {m:?}"),
        }
    }
    if let Some(f) = &a.export {
        let t = Instant::now();
        let raw = std::fs::read(f)?;
        let z = zstd::encode_all(&raw[..], 3)?;
        // Odd chunk size: boundaries must mean nothing to the agent.
        for piece in z.chunks(99_991.min(CHUNK_SIZE)) {
            c.send(&ClientMsg::ImportChunk(piece.to_vec()))?;
        }
        c.send(&ClientMsg::ImportEnd)?;
        match c.recv()? {
            AgentMsg::Imported { paths } => println!(
                "imported: {paths} paths, {} bytes ({} zstd) ({:?})",
                raw.len(),
                z.len(),
                t.elapsed()
            ),
            m => bail!("expected Imported, got {m:?}"),
        }
    }

    let options = a
        .option
        .iter()
        .map(|o| {
            o.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .context("NAME=VALUE")
        })
        .collect::<Result<Vec<_>>>()?;
    let req = BuildRequest {
        drv_path: a.drv.clone(),
        outputs: a.output.clone(),
        options,
    };
    let t = Instant::now();
    c.send(&ClientMsg::Build(req.clone()))?;
    let mut log_bytes = 0usize;
    let mut reattached = a.reattach_after.is_none();
    let result = loop {
        if !reattached && t.elapsed() >= Duration::from_secs(a.reattach_after.unwrap_or(0)) {
            println!("dropping the connection at {:?}", t.elapsed());
            c.close();
            thread::sleep(Duration::from_secs(2));
            let (nc, hello) = Conn::open(&a.connect, &token)?;
            println!("reconnected: {hello:?}");
            c = nc;
            c.keepalive();
            c.send(&ClientMsg::Build(req.clone()))?;
            reattached = true;
        }
        match c.recv()? {
            AgentMsg::Log(bytes) => {
                log_bytes += bytes.len();
                if !bytes.ends_with(b"\n") {
                    bail!("log frame does not end in a newline");
                }
                for l in String::from_utf8_lossy(&bytes).lines() {
                    println!("  log: {l}");
                }
            }
            AgentMsg::BuildDone(r) => break r,
            m => bail!("expected Log/BuildDone, got {m:?}"),
        }
    };
    println!(
        "build done: status {} outputs {:?} log {} bytes ({:?})\n  message: {}",
        result.status,
        result.outputs,
        log_bytes,
        t.elapsed(),
        result.message
    );

    for out in &result.outputs {
        let t = Instant::now();
        c.send(&ClientMsg::FetchOutput { path: out.clone() })?;
        let info = match c.recv()? {
            AgentMsg::Output(i) => i,
            m => bail!("expected Output, got {m:?}"),
        };
        let mut z = Vec::new();
        let mut chunks = 0;
        loop {
            match c.recv()? {
                AgentMsg::NarChunk(b) => {
                    if b.len() > CHUNK_SIZE {
                        bail!("oversized chunk");
                    }
                    chunks += 1;
                    z.extend(b)
                }
                AgentMsg::NarEnd => break,
                m => bail!("expected NarChunk/NarEnd, got {m:?}"),
            }
        }
        let mut nar = Vec::new();
        zstd::stream::read::Decoder::new(&z[..])?.read_to_end(&mut nar)?;
        let hash = hex::encode(Sha256::digest(&nar));
        let ok = hash == info.nar_hash && nar.len() as u64 == info.nar_size;
        println!(
            "output {}: narHash {} narSize {} refs {:?} deriver {:?}; received {} zstd bytes in {chunks} chunks -> {} NAR bytes, sha256 {hash}: {} ({:?})",
            info.path,
            info.nar_hash,
            info.nar_size,
            info.references,
            info.deriver,
            z.len(),
            nar.len(),
            if ok { "MATCH" } else { "MISMATCH" },
            t.elapsed()
        );
        if let Some(d) = &a.out_dir {
            let name = out.rsplit('/').next().unwrap_or("out");
            std::fs::write(d.join(format!("{name}.nar")), &nar)?;
        }
        if !ok {
            bail!("NAR of {out} does not match its announced hash/size");
        }
    }
    // The agent must refuse paths it did not build.
    c.send(&ClientMsg::FetchOutput {
        path: a.drv.clone(),
    })?;
    match c.recv() {
        Err(e) => println!("fetch of a non-output refused: {e:#}"),
        Ok(m) => bail!("agent sent a non-output: {m:?}"),
    }
    c.close();
    if !a.no_goodbye {
        let (c, _) = Conn::open(&a.connect, &token)?;
        c.send(&ClientMsg::Goodbye {
            collect_garbage: a.gc,
        })?;
        let mut c = c;
        match c.recv()? {
            AgentMsg::Bye => println!("bye ({:?} total)", t0.elapsed()),
            m => bail!("expected Bye, got {m:?}"),
        }
        c.close();
    }
    if result.status != 0 {
        bail!("build failed with status {}", result.status);
    }
    Ok(())
}
