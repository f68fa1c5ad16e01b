//! The real `Pbs<Commands>` against a real OpenPBS or PBS Professional server (none is
//! packaged for Debian, so CI has none). Ignored; run with `--ignored` on a host with the
//! PBS clients and
//!
//! - `NSH_TEST_OPENPBS_BIN_DIR`: the clients' directory (`/opt/pbs/bin`);
//! - `NSH_TEST_OPENPBS_HISTORY`: `on` or `off`, as the server's `job_history_enable` is
//!   (with it off a finished job vanishes, and the test expects that);
//! - `NSH_TEST_OPENPBS_SERVER` (optional): `host` or `host:port`, as `pbs-host`/`pbs-port`;
//! - `NSH_TEST_OPENPBS_QUEUED` (optional, default `ncpus=9999`): a resource request that
//!   keeps a job queued (more than any node has).
//!
//! The user running it must be allowed to submit (root needs `acl_roots`) and needs a
//! private runtime directory (`NSH_RUNTIME_DIR`, else `$XDG_RUNTIME_DIR/nsh`, else
//! `$HOME/.cache/nsh`) for the job scripts. At the end no `qsub` may be left running.

use super::Pbs;
use super::testbed_tests::{ended, job, wait_for};
use crate::scheduler::commands::{Commands, RunCommand};
use crate::scheduler::{EndReason, JobId, JobState, Scheduler};

struct Server {
    history: bool,
    queued: (String, String),
}

fn setup() -> (Pbs<Commands>, Server) {
    let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
    let (Some(bin_dir), Some(history)) = (
        var("NSH_TEST_OPENPBS_BIN_DIR"),
        var("NSH_TEST_OPENPBS_HISTORY"),
    ) else {
        panic!(
            "set NSH_TEST_OPENPBS_BIN_DIR and NSH_TEST_OPENPBS_HISTORY (on/off) to run \
             against a real OpenPBS server (see the module doc)"
        );
    };
    let history = match history.as_str() {
        "on" => true,
        "off" => false,
        other => panic!("NSH_TEST_OPENPBS_HISTORY is on or off, not {other}"),
    };
    let queued = var("NSH_TEST_OPENPBS_QUEUED").unwrap_or_else(|| "ncpus=9999".into());
    let (name, value) = queued
        .split_once('=')
        .expect("NSH_TEST_OPENPBS_QUEUED is name=value");
    let commands = Commands::Local {
        bin_dir: Some(bin_dir),
        run_as: None,
    };
    let pbs = Pbs::new(commands, var("NSH_TEST_OPENPBS_SERVER"));
    let server = Server {
        history,
        queued: (name.to_owned(), value.to_owned()),
    };
    (pbs, server)
}

#[tokio::test]
#[ignore = "needs a real OpenPBS server; see the module doc"]
async fn against_openpbs() {
    let (pbs, server) = setup();
    let dialect = pbs.dialect().await.unwrap();
    eprintln!("{}", pbs.describe());
    assert!(
        matches!(dialect, super::Dialect::OpenPbs { json: true, .. }),
        "{dialect:?}"
    );
    let mut submitted = Vec::new();
    let outcome = scenario(&pbs, &server, &mut submitted).await;
    for id in &submitted {
        pbs.cancel(id).await.unwrap();
    }
    outcome.unwrap();
    for id in &submitted {
        assert!(numbered_at_server(&id.0), "job id {id} is not SEQ.SERVER");
    }
    // Plain qsub would leave a per-user helper with the same command line for a minute;
    // `-f` must not.
    let left = leftover_qsubs();
    assert!(left.is_empty(), "qsub processes left behind: {left:?}");
}

/// `16.pbshost`: what OpenPBS's qsub prints.
fn numbered_at_server(id: &str) -> bool {
    id.split_once('.').is_some_and(|(seq, server)| {
        !seq.is_empty() && seq.bytes().all(|b| b.is_ascii_digit()) && !server.is_empty()
    })
}

/// Command lines of running `qsub`s that name a script in this process's runtime directory.
fn leftover_qsubs() -> Vec<String> {
    let Ok(dir) = crate::runtime_dir::runtime_dir() else {
        return Vec::new();
    };
    let dir = dir.to_string_lossy().into_owned();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .filter_map(|p| std::fs::read(p.ok()?.path().join("cmdline")).ok())
        .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " "))
        .filter(|line| {
            let argv0 = line.split(' ').next().unwrap_or_default();
            argv0.rsplit('/').next() == Some("qsub") && line.contains(&dir)
        })
        .collect()
}

async fn scenario<R: RunCommand>(
    pbs: &Pbs<R>,
    server: &Server,
    submitted: &mut Vec<JobId>,
) -> anyhow::Result<()> {
    exit_codes(pbs, server, submitted).await?;

    // A running job, deleted; deleting it again forces (and finds it gone).
    let id = pbs
        .submit(&job("sleep", "#!/bin/sh\nsleep 120\n", &[]))
        .await?;
    submitted.push(id.clone());
    let mut seen = Vec::new();
    let running = wait_for(pbs, &id, "running", &mut seen, |s| {
        s.state != JobState::Pending
    })
    .await?;
    anyhow::ensure!(
        running.state == JobState::Running && running.host.is_some(),
        "{running:?}"
    );
    pbs.cancel(&id).await?;
    let cancelled = wait_for(pbs, &id, "deleted", &mut seen, ended).await?;
    expect_deleted(server, &cancelled)?;
    pbs.cancel(&id).await?;

    // Deleted at once after the submit, as when Nix gives up on a build right away: the
    // qdel may reach the mom before the job's process starts (then it ends ~10 s later).
    let id = pbs
        .submit(&job("early", "#!/bin/sh\nsleep 120\n", &[]))
        .await?;
    submitted.push(id.clone());
    pbs.cancel(&id).await?;
    let mut seen = Vec::new();
    let cancelled = wait_for(pbs, &id, "deleted", &mut seen, ended).await?;
    eprintln!("job {id}: states seen {seen:?}");
    expect_deleted(server, &cancelled)?;

    // A job that cannot start: queued, deleted.
    let (name, value) = (&server.queued.0, &server.queued.1);
    let id = pbs
        .submit(&job("queued", "#!/bin/sh\nexit 0\n", &[(name, value)]))
        .await?;
    submitted.push(id.clone());
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let queued = pbs.status(&id).await?;
    eprintln!("job {id}: queued: {queued:?}");
    anyhow::ensure!(
        queued.state == JobState::Pending && queued.in_queue,
        "{queued:?}"
    );
    pbs.cancel(&id).await?;
    let mut seen = Vec::new();
    let deleted = wait_for(pbs, &id, "deleted", &mut seen, ended).await?;
    expect_deleted(server, &deleted)?;
    anyhow::ensure!(
        deleted.exit_code.is_none() || !server.history,
        "{deleted:?}"
    );

    // An id the server never gave out.
    let unknown = pbs.status(&JobId("999999".into())).await?;
    anyhow::ensure!(unknown.state == JobState::Unknown, "{unknown:?}");
    pbs.cancel(&JobId("999999".into())).await?;
    Ok(())
}

/// exit 7 and exit 0: through the queue to the end, on a host.
async fn exit_codes<R: RunCommand>(
    pbs: &Pbs<R>,
    server: &Server,
    submitted: &mut Vec<JobId>,
) -> anyhow::Result<()> {
    for code in [7, 0] {
        let script = format!("#!/bin/sh\nsleep 2\nexit {code}\n");
        let id = pbs
            .submit(&job(
                &format!("exit{code}"),
                &script,
                &[("walltime", "00:05:00")],
            ))
            .await?;
        submitted.push(id.clone());
        let mut seen = Vec::new();
        let running = wait_for(pbs, &id, "started", &mut seen, |s| {
            s.state != JobState::Pending
        })
        .await?;
        anyhow::ensure!(running.host.is_some() || ended(&running), "{running:?}");
        let done = wait_for(pbs, &id, "ended", &mut seen, ended).await?;
        eprintln!("job {id}: states seen {seen:?}");
        if server.history {
            anyhow::ensure!(
                done.state == JobState::Finished
                    && done.exit_code == Some(code)
                    && done.end == Some(EndReason::Exited)
                    && done.host.is_some(),
                "{done:?}"
            );
        } else {
            anyhow::ensure!(done.state == JobState::Unknown, "history off: {done:?}");
        }
    }
    Ok(())
}

fn expect_deleted(server: &Server, s: &crate::scheduler::JobStatus) -> anyhow::Result<()> {
    if server.history {
        anyhow::ensure!(
            s.state == JobState::Failed && s.end == Some(EndReason::Cancelled),
            "{s:?}"
        );
    } else {
        anyhow::ensure!(s.state == JobState::Unknown, "history off: {s:?}");
    }
    Ok(())
}
