//! Nix's own build hook, for derivations nsh does not take.
//!
//! nsh starts it lazily, replays the settings block it read, and forwards each offer it
//! routes away byte for byte. If Nix's hook accepts, nsh relays the accept, forwards the
//! rest of stdin, and from then on only relays its stderr and exit status.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStderr, ChildStdin, Command, Stdio};

use anyhow::{Context, Result, bail};

pub struct Fallback {
    child: Child,
    stdin: ChildStdin,
    stderr: BufReader<ChildStderr>,
    /// Set once it answered `# decline-permanently`: it will never accept again.
    pub declined_permanently: bool,
}

/// Nix's hook for this Nix: `nix __build-remote` on 2.9+, `libexec/nix/build-remote` on
/// 2.8 (which has no `__build-remote`). Found from `nix` on PATH.
fn command(verbosity: &str) -> Result<Command> {
    let nix = find_in_path("nix").context("'nix' is not on PATH")?;
    let real = std::fs::canonicalize(&nix).unwrap_or(nix.clone());
    // …/bin/nix → …/libexec/nix/build-remote exists on 2.8 (and on some later builds too);
    // prefer `nix __build-remote` where the binary knows it.
    let libexec = real
        .parent()
        .and_then(|b| b.parent())
        .map(|p| p.join("libexec/nix/build-remote"));
    let knows_subcommand = Command::new(&nix)
        .args(["__build-remote", "--help"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map(|o| !String::from_utf8_lossy(&o.stderr).contains("not a recognised command"))
        .unwrap_or(false);
    let mut cmd = if knows_subcommand {
        let mut c = Command::new(&nix);
        c.arg("__build-remote");
        c
    } else if let Some(p) = libexec.filter(|p| p.exists()) {
        Command::new(p)
    } else {
        bail!("cannot find Nix's own build hook next to {}", nix.display());
    };
    cmd.arg(verbosity);
    Ok(cmd)
}

fn find_in_path(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

impl Fallback {
    /// Starts Nix's hook and replays the settings block (`raw_settings`: the exact bytes
    /// nsh read, terminator included).
    pub fn start(verbosity: &str, raw_settings: &[u8]) -> Result<Fallback> {
        let mut cmd = command(verbosity)?;
        // fd 4 (build log) is inherited as is: Nix's hook writes its log there itself.
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::inherit())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().context("cannot start Nix's own build hook")?;
        let mut stdin = child.stdin.take().context("no stdin for Nix's hook")?;
        let stderr = BufReader::new(child.stderr.take().context("no stderr for Nix's hook")?);
        stdin
            .write_all(raw_settings)
            .context("cannot send the settings to Nix's own build hook")?;
        Ok(Fallback {
            child,
            stdin,
            stderr,
            declined_permanently: false,
        })
    }

    /// Forwards one offer (its raw bytes) and returns Nix's hook's reply line; lines that
    /// are not replies (its log output) are passed through to our stderr.
    pub fn offer(&mut self, raw_offer: &[u8]) -> Result<String> {
        if self.declined_permanently {
            return Ok("# decline".into());
        }
        self.stdin.write_all(raw_offer)?;
        self.stdin.flush()?;
        loop {
            let mut line = String::new();
            if self.stderr.read_line(&mut line)? == 0 {
                bail!("Nix's own build hook exited without answering");
            }
            let reply = line.trim_end_matches('\n');
            if reply.starts_with("# ") {
                if reply == "# decline-permanently" {
                    self.declined_permanently = true;
                    return Ok("# decline".into());
                }
                return Ok(reply.to_string());
            }
            crate::nix_log::emit(&line);
        }
    }

    /// After Nix's hook accepted: the machine line that follows `# accept`.
    pub fn machine_line(&mut self) -> Result<String> {
        let mut line = String::new();
        self.stderr.read_line(&mut line)?;
        Ok(line.trim_end_matches('\n').to_string())
    }

    /// After an accept: forwards the remaining stdin (inputs, wanted outputs), then relays
    /// Nix's hook's stderr until it exits, returning its exit code.
    pub fn finish(mut self, rest_of_stdin: &[u8]) -> Result<i32> {
        self.stdin.write_all(rest_of_stdin)?;
        drop(self.stdin);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            if self.stderr.read_until(b'\n', &mut buf)? == 0 {
                break;
            }
            crate::nix_log::emit(&String::from_utf8_lossy(&buf));
        }
        let status = self.child.wait()?;
        Ok(status.code().unwrap_or(1))
    }

    /// Closes its stdin (EOF = no more offers) and waits for it.
    pub fn close(mut self) {
        drop(self.stdin);
        let mut rest = String::new();
        while self
            .stderr
            .read_line(&mut rest)
            .map(|n| n > 0)
            .unwrap_or(false)
        {
            crate::nix_log::emit(&rest);
            rest.clear();
        }
        let _ = self.child.wait();
    }
}
