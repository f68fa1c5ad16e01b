//! `nsh`: Nix runs it as its build hook (`nsh <verbosity>`); users run `nsh check`.

mod agent_channel;
mod agent_deploy;
mod build;
mod ca_db;
mod check;
mod config;
mod driver;
mod fallback;
mod job_script;
mod local_store;
mod nix_cores;
mod nix_log;
mod output_fetch;
mod phases;
mod queue_slots;
mod reaper;
mod resubmit;
mod routing;
mod runtime_dir;
mod scheduler;
mod ssh;
mod staging;
mod transfer;
mod waiting_hooks;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// What `nsh --help` adds to the subcommand list; README.md says the same at length.
const AFTER_HELP: &str = "\
As a build hook:
  Nix runs `nsh <verbosity>`. Make nsh the hook with `--option build-hook /path/to/nsh`
  (single-user Nix, root or a trusted user), or with `build-hook = /path/to/nsh` in the nix.conf of the
  nix-daemon (then restart it; the hook runs as root, with root's ssh config).

Configuration (nsh.conf, nix.conf syntax; a stronger source wins a key):
  $NIX_CONF_DIR/nsh.conf (default /etc/nix/nsh.conf), weakest
  the user files, of which the first listed is the strongest:
    $XDG_CONFIG_HOME/nix/nsh.conf (default ~/.config/nix/nsh.conf), then DIR/nix/nsh.conf
    for each DIR in $XDG_CONFIG_DIRS; or the list in $NSH_USER_CONF_FILES
  the text of $NSH_CONFIG, strongest

Diagnostics: NSH_LOG=debug (under nix-daemon: in the daemon's environment).
Settings, derivation attributes and schedulers: README.md; a whole setup: docs/deploying.md.";

#[derive(Parser)]
#[command(
    name = "nsh",
    version,
    about = "Nix build hook that runs each build as a batch job",
    after_help = AFTER_HELP
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check the configuration, the scheduler, SSH and the agent, and run a tiny job.
    Check,
    /// Internal: cancels JOB unless the hook that started it says it is done.
    #[command(name = "__reap", hide = true)]
    Reap {
        job: String,
        /// The queue slot (`max-queued-jobs`) is on fd 3: keep it until the job is gone.
        #[arg(long)]
        holds_slot: bool,
    },
}

fn init_tracing() {
    // Diagnostics go to stderr only when asked for: Nix shows plain stderr lines only
    // before the hook's reply.
    if let Ok(filter) = std::env::var("NSH_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_ansi(false)
            .with_writer(nix_log::PlainStderr::default)
            .try_init();
    }
}

fn main() -> ExitCode {
    init_tracing();
    let args: Vec<String> = std::env::args().collect();
    // Nix runs the hook as `<name> <verbosity>`.
    if args.len() == 2 && !args[1].is_empty() && args[1].bytes().all(|b| b.is_ascii_digit()) {
        return ExitCode::from(driver::run(&args[1]).clamp(0, 255) as u8);
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Check => match check::run() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                println!("FAIL  {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Reap { job, holds_slot } => {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return ExitCode::FAILURE;
            };
            let connect = async || {
                let config = config::load()?;
                scheduler::Backend::from_config(&config).await
            };
            match reaper::run(&rt, std::io::stdin(), &job, holds_slot, connect) {
                Ok(()) => ExitCode::SUCCESS,
                Err(_) => ExitCode::FAILURE,
            }
        }
    }
}
