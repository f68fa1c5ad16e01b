//! An agent that cannot serve its build — the node's Nix is missing or does not start (a
//! `remote-nix-bin-dir` built for another glibc, say) — still answers its client: it waits
//! on the socket, answers the first authenticated `Hello` with `Error` carrying the reason
//! (nix-store's own stderr included), removes its directory and exits. Otherwise the client
//! would see only a closed connection, and the reason would sit in the job's log.

use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::{Duration, Instant};

use nsh_wire::agent_protocol::{AgentMsg, ClientMsg};
use nsh_wire::codec;

use crate::log::log;
use crate::serve::{EXIT_LEASE, EXIT_SIGNAL, pending_signal, token_matches};

/// Exit status after reporting the reason (EX_CONFIG: the node's setup, not the build).
pub const EXIT_UNUSABLE: i32 = 78;

/// How long a connection may take to say hello (as for a serving agent).
const HELLO_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves only the refusal, then exits; the lease and signals end it as they would a
/// serving agent.
pub fn serve(
    listener: UnixListener,
    dir: &Path,
    token: &str,
    reason: &anyhow::Error,
    lease: Duration,
) -> ! {
    let message = format!("cannot run the node's Nix: {reason:#}");
    log!("{message}; waiting {} s for nsh to ask", lease.as_secs());
    let owned_dir = dir.to_owned();
    std::thread::spawn(move || watch(&owned_dir, lease));
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        if answer(stream, token, &message) {
            log!("told the client; exit {EXIT_UNUSABLE}");
            remove_dir(dir);
            std::process::exit(EXIT_UNUSABLE);
        }
    }
    remove_dir(dir);
    std::process::exit(EXIT_UNUSABLE)
}

/// Reads the hello; for the right token, sends the refusal. True if it was sent.
fn answer(stream: UnixStream, token: &str, message: &str) -> bool {
    if stream.set_read_timeout(Some(HELLO_TIMEOUT)).is_err() {
        return false;
    }
    let Ok(mut writer) = stream.try_clone() else {
        return false;
    };
    let mut reader = std::io::BufReader::new(stream);
    match codec::read_frame::<ClientMsg>(&mut reader) {
        Ok(Some(ClientMsg::Hello { token: offered, .. })) if token_matches(token, &offered) => {
            let msg = AgentMsg::Error {
                message: message.to_owned(),
            };
            codec::write_frame(&mut writer, &msg).is_ok()
                && std::io::Write::flush(&mut writer).is_ok()
        }
        _ => {
            log!("refused a connection without the right hello");
            false
        }
    }
}

/// Ends the agent when its lease runs out with nobody asking, or on SIGTERM/SIGINT.
fn watch(dir: &Path, lease: Duration) {
    let start = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(100));
        if pending_signal() != 0 {
            log!("received a signal (job cancelled?); exit {EXIT_SIGNAL}");
            remove_dir(dir);
            std::process::exit(EXIT_SIGNAL);
        }
        if start.elapsed() > lease {
            log!("lease expired: no client asked for {} s", lease.as_secs());
            remove_dir(dir);
            std::process::exit(EXIT_LEASE);
        }
    }
}

fn remove_dir(dir: &Path) {
    if let Err(e) = std::fs::remove_dir_all(dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        log!("removing {}: {e}", dir.display());
    }
}
