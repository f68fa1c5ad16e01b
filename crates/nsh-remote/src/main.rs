//! `nsh-remote`: nsh's agent inside a batch job. It serves one build over a Unix socket
//! (reached through SSH via `nsh-remote connect`), and checks a node's setup.
//!
//! Built as a static binary (`-C target-feature=+crt-static`): it must run on nodes without
//! Nix's or our libraries, so it never looks up users or hosts by name (static glibc cannot
//! load NSS modules).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

mod build;
mod connect;
mod daemon;
#[cfg(feature = "fault-injection")]
mod fault;
mod import;
mod job_cpus;
mod kept_build;
mod log;
mod nix;
mod procs;
mod refuse;
mod self_check;
mod serve;
mod session;
mod store_lock;
mod timing;
mod upload;

/// nsh's build agent, run inside each batch job.
#[derive(Parser)]
#[command(name = "nsh-remote", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve one build on <DIR>/agent.sock (token in NSH_AGENT_TOKEN).
    Serve {
        /// Private directory for the socket; created 0700, removed on exit.
        #[arg(long)]
        dir: PathBuf,
        /// Store for nix-store --store (`auto` = Nix's default).
        #[arg(long, default_value = "auto")]
        store: String,
        /// Directory holding nix-store (remote-nix-bin-dir); default: PATH.
        #[arg(long)]
        nix_bin_dir: Option<PathBuf>,
        /// Seconds without a word from a client after which the build is stopped.
        #[arg(long, default_value_t = nsh_wire::agent_protocol::LEASE.as_secs())]
        lease_secs: u64,
    },
    /// Bridge stdin/stdout to the agent socket (run through ssh).
    Connect {
        socket: PathBuf,
        /// How long to wait for the agent to start listening.
        #[arg(long, default_value_t = 120)]
        wait_secs: u64,
    },
    /// Check that this node can run the agent.
    SelfCheck {
        #[arg(long)]
        state_dir: Option<PathBuf>,
        #[arg(long)]
        nix_bin_dir: Option<PathBuf>,
        #[arg(long, default_value = "auto")]
        store: String,
    },
    /// Print the protocol and program versions.
    Version,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            dir,
            store,
            nix_bin_dir,
            lease_secs,
        } => {
            let opts = serve::ServeOptions {
                dir,
                store,
                nix_bin_dir,
                lease: Duration::from_secs(lease_secs.max(1)),
            };
            match serve::run(opts) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    log::log!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Connect { socket, wait_secs } => {
            connect::run(&socket, Duration::from_secs(wait_secs))
        }
        Command::SelfCheck {
            state_dir,
            nix_bin_dir,
            store,
        } => self_check::run(state_dir.as_deref(), nix_bin_dir.as_deref(), &store),
        Command::Version => {
            println!(
                "nsh-remote {} (agent protocol {})",
                env!("CARGO_PKG_VERSION"),
                nsh_wire::agent_protocol::PROTOCOL_VERSION
            );
            ExitCode::SUCCESS
        }
    }
}
