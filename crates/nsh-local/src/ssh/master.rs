//! One ControlMaster: `ssh/<host>/m<K>.ctl` records its control socket (and the master's
//! log), so every hook with a slot on master K resumes the same connection. Masters are
//! detached (`ssh -f` leaves the hook's process group, which Nix SIGKILLs when the build
//! ends) and exit after [`MASTER_IDLE`] without sessions.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use openssh::{ControlPersist, KnownHosts, Session, SessionBuilder};

use super::slots;

/// How long an idle master stays up for the next hook.
const MASTER_IDLE: Duration = Duration::from_secs(60);

/// A session through master `k` of `host`: the recorded one if it answers, else one started
/// now. Start-up is serialised per host (`start.lock`), so dozens of hooks arriving at once
/// open their connections one after another instead of running into sshd's MaxStartups
/// (10 unauthenticated connections by default).
pub async fn session(control_dir: &Path, host_dir: &Path, host: &str, k: usize) -> Result<Session> {
    let record = host_dir.join(format!("m{k}.ctl"));
    if let Some(s) = resume(&record).await {
        return Ok(s);
    }
    let start_lock = host_dir.join("start.lock");
    let _lock = tokio::task::spawn_blocking(move || slots::lock_exclusive(&start_lock)).await??;
    // Another hook may have started it while this one waited for the lock.
    if let Some(s) = resume(&record).await {
        return Ok(s);
    }
    let session = start(control_dir, host).await?;
    let (ctl, log) = session.detach();
    let text = format!(
        "{}\n{}\n",
        ctl.display(),
        log.as_deref()
            .map(Path::display)
            .map(|d| d.to_string())
            .unwrap_or_default()
    );
    // Written whole and renamed: hooks read the record without the lock.
    let tmp = host_dir.join(format!("m{k}.ctl.tmp"));
    tokio::fs::write(&tmp, text)
        .await
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    tokio::fs::rename(&tmp, &record)
        .await
        .with_context(|| format!("cannot write {}", record.display()))?;
    Ok(Session::resume(ctl, log))
}

/// The recorded master of `record`, if it is still up; `None` if it never was, exited
/// idle, or was killed (then the caller starts a new one).
pub async fn resume(record: &Path) -> Option<Session> {
    let text = tokio::fs::read_to_string(record).await.ok()?;
    let mut lines = text.lines();
    let ctl = PathBuf::from(lines.next().filter(|l| !l.is_empty())?);
    let log = lines
        .next()
        .filter(|l| !l.is_empty())
        .map(|l| PathBuf::from(l).into_boxed_path());
    if !tokio::fs::try_exists(&ctl).await.unwrap_or(false) {
        return None;
    }
    let session = Session::resume(ctl.into_boxed_path(), log);
    session.check().await.ok()?;
    Some(session)
}

async fn start(control_dir: &Path, host: &str) -> Result<Session> {
    let mut builder = SessionBuilder::default();
    builder
        .known_hosts_check(KnownHosts::Strict)
        .control_directory(control_dir)
        // Not openssh's own cleaning: it removes every other hook's master directory,
        // including ones whose master is still starting. See `remove_stale_masters`.
        .clean_history_control_directory(false)
        .control_persist(ControlPersist::IdleFor(
            std::num::NonZeroUsize::new(MASTER_IDLE.as_secs() as usize)
                .unwrap_or(std::num::NonZeroUsize::MIN),
        ))
        .connect_timeout(Duration::from_secs(15))
        .server_alive_interval(Duration::from_secs(10));
    let dir = control_dir.to_path_buf();
    tokio::task::spawn_blocking(move || remove_stale_masters(&dir)).await?;
    // openssh's error carries the master's own words (`Permission denied (publickey)`,
    // `Could not resolve hostname`).
    Ok(builder.connect(host).await?)
}

/// Removes master directories left by masters that exited (idle timeout) more than an
/// hour ago: no control socket inside and not touched since. All hosts' masters share
/// `dir`, so one scan covers them.
fn remove_stale_masters(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let is_master_dir = e
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(".ssh-connection"));
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(3600));
        if is_master_dir && old && !path.join("master").exists() {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}
