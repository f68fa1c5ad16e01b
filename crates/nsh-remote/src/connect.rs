//! `nsh-remote connect SOCK`: what nsh runs through `ssh <node>`; joins the SSH channel
//! (stdin/stdout) to the agent's Unix socket. The job may still be starting, so it keeps
//! trying to connect for a while.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

/// Pause between tries: short while the agent is most likely just starting (nsh often
/// arrives within milliseconds of the job's start), longer after.
const RETRY_SOON: Duration = Duration::from_millis(3);
const SOON: Duration = Duration::from_secs(2);
const RETRY: Duration = Duration::from_millis(50);
const BUF: usize = 64 << 10;

fn connect(socket: &Path, wait: Duration) -> Result<UnixStream, std::io::Error> {
    let start = Instant::now();
    loop {
        match UnixStream::connect(socket) {
            Ok(s) => return Ok(s),
            Err(e) if start.elapsed() >= wait => return Err(e),
            Err(_) if start.elapsed() < SOON => thread::sleep(RETRY_SOON),
            Err(_) => thread::sleep(RETRY),
        }
    }
}

/// Copies until EOF; `Ok(bytes)` or the first error.
fn pump(mut from: impl Read, mut to: impl Write) -> std::io::Result<u64> {
    let mut buf = vec![0u8; BUF];
    let mut total = 0;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(buf.get(..n).unwrap_or_default())?;
        to.flush()?;
        total += n as u64;
    }
}

pub fn run(socket: &Path, wait: Duration) -> ExitCode {
    let stream = match connect(socket, wait) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "nsh-remote connect: no agent listening on {} after {} s: {e} (did the job start? see its log)",
                socket.display(),
                wait.as_secs()
            );
            return ExitCode::from(2);
        }
    };
    // Unbuffered handles on fds 0 and 1: std's stdout is line-buffered.
    let (stdin, stdout) = match (
        std::io::stdin().as_fd().try_clone_to_owned(),
        std::io::stdout().as_fd().try_clone_to_owned(),
    ) {
        (Ok(i), Ok(o)) => (File::from(i), File::from(o)),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("nsh-remote connect: duplicating stdin/stdout: {e}");
            return ExitCode::from(1);
        }
    };
    let up = match stream.try_clone() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("nsh-remote connect: cloning socket: {e}");
            return ExitCode::from(1);
        }
    };
    thread::spawn(move || {
        if let Err(e) = pump(stdin, &up) {
            eprintln!("nsh-remote connect: stdin to agent: {e}");
        }
        // Tell the agent the client is done sending; its replies still flow back.
        let _ = up.shutdown(Shutdown::Write);
    });
    match pump(&stream, stdout) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nsh-remote connect: agent to stdout: {e}");
            ExitCode::from(1)
        }
    }
}
