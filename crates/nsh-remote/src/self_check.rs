//! `nsh-remote self-check`: one line per check of what `serve` will need on this node,
//! each with what to do when it fails.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::ExitCode;

use crate::nix::NixStore;
use crate::serve::prepare_dir;

struct Report {
    failed: bool,
}

impl Report {
    fn ok(&self, what: &str) {
        println!("ok    {what}");
    }
    fn warn(&self, what: &str) {
        println!("warn  {what}");
    }
    fn fail(&mut self, what: &str) {
        self.failed = true;
        println!("FAIL  {what}");
    }
}

pub fn run(state_dir: Option<&Path>, nix_bin_dir: Option<&Path>, store: &str) -> ExitCode {
    let mut r = Report { failed: false };
    match NixStore::locate(nix_bin_dir, store) {
        Ok(nix) => {
            match nix.version() {
                Ok(v) => r.ok(&format!("nix-store at {}: {v}", nix.program().display())),
                Err(e) => r.fail(&format!(
                    "{e:#}: check the Nix installation or remote-nix-bin-dir"
                )),
            }
            // Inputs are added through it, with this user's rights on this store.
            match crate::daemon::check(&nix) {
                Ok(v) => r.ok(&v),
                Err(e) => r.fail(&format!(
                    "{e:#}: the agent adds inputs through nix-daemon --stdio; check \
                     remote-store and that this user may use it"
                )),
            }
        }
        Err(e) => r.fail(&format!("{e:#}")),
    }
    if store.starts_with('/') {
        check_store(&mut r, Path::new(store));
    }
    if let Some(dir) = state_dir {
        check_state_dir(&mut r, dir);
    }
    if r.failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn check_store(r: &mut Report, store: &Path) {
    let s = store.display();
    if store.starts_with("/tmp") || store.starts_with("/var/tmp") {
        r.fail(&format!("store {s} is under a world-writable temp dir: put remote-store elsewhere (e.g. /scratch/$USER/nix)"));
        return;
    } else if store.starts_with("/run/user") {
        r.warn(&format!(
            "store {s} is under /run/user, which is removed at logout: prefer a scratch dir"
        ));
    }
    match fs::metadata(store) {
        Ok(m) if m.mode() & 0o002 != 0 => {
            r.fail(&format!("store {s} is world-writable: chmod o-w {s}"))
        }
        Ok(_) => r.ok(&format!("store {s} exists and is not world-writable")),
        Err(_) => r.ok(&format!("store {s} does not exist yet (Nix creates it)")),
    }
}

fn check_state_dir(r: &mut Report, dir: &Path) {
    let d = dir.display();
    let existed = dir.exists();
    if let Err(e) = prepare_dir(dir) {
        r.fail(&format!(
            "state dir {d}: {e:#}: create it (mode 0700) as this user"
        ));
        return;
    }
    match fs::metadata(dir) {
        Ok(m) if m.mode() & 0o022 != 0 => r.fail(&format!(
            "state dir {d} is group/other-writable: chmod go-w {d}"
        )),
        Ok(_) => r.ok(&format!(
            "state dir {d} {} and is private to this user",
            if existed { "exists" } else { "was created" }
        )),
        Err(e) => r.fail(&format!("state dir {d}: {e}")),
    }
    let sock = dir.join(format!(".self-check-{}.sock", std::process::id()));
    match UnixListener::bind(&sock) {
        Ok(l) => {
            drop(l);
            let _ = fs::remove_file(&sock);
            r.ok(&format!("can listen on a Unix socket in {d}"));
        }
        Err(e) => r.fail(&format!(
            "cannot bind a Unix socket in {d}: {e} (path too long? Unix socket paths are limited to 107 bytes; use a shorter state-dir)"
        )),
    }
}
