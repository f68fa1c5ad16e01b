//! The real `Pbs<Commands>` against the testbed's Torque-compatible wrappers over Slurm.
//! Ignored by a plain `cargo test`; run with `--ignored` and
//!
//! - `NSH_TEST_PBS_BIN_DIR`: the directory of `qsub`, `qstat`, `qdel` where they run
//!   (`/opt/torque/bin` on the testbed's hosts: `NSH_TB_TORQUE_BIN`);
//! - `NSH_TEST_PBS_EXEC` (optional): a command prefix that runs a command on the testbed's
//!   submit host with stdin passed through, e.g. `scripts/testbed exec submit --` (with
//!   `NSH_TESTBED_INSTANCE` set). The test then writes small shims that run the commands
//!   there, the script file going over stdin. Unset: the commands run on this machine.
//!
//! Run without `NSH_TEST_PBS_BIN_DIR`, it fails rather than passing untested.

use std::time::{Duration, Instant};

use super::Pbs;
use crate::job_script::sh_quote;
use crate::scheduler::commands::{Commands, Invocation, RunCommand};
use crate::scheduler::{JobId, JobParams, JobSpec, JobState, JobStatus, Scheduler};

const POLL: Duration = Duration::from_millis(300);
pub(super) const JOB_DEADLINE: Duration = Duration::from_secs(120);

pub(super) fn job(name: &str, script: &str, resources: &[(&str, &str)]) -> JobSpec {
    JobSpec {
        name: format!("nsh-{name}"),
        script: script.to_owned(),
        environment: vec![
            ("PATH".into(), "/usr/bin:/bin".into()),
            ("NSH_PBS_MARK".into(), "a,b 'c'".into()),
        ],
        working_dir: "/tmp".into(),
        params: JobParams::Pbs(
            resources
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
        ),
        exclude_hosts: Vec::new(),
    }
}

/// Polls until `done`, keeping every state seen.
pub(super) async fn wait_for<R: RunCommand>(
    pbs: &Pbs<R>,
    id: &JobId,
    what: &str,
    seen: &mut Vec<JobState>,
    done: impl Fn(&JobStatus) -> bool,
) -> anyhow::Result<JobStatus> {
    let start = Instant::now();
    loop {
        let status = pbs.status(id).await?;
        if seen.last() != Some(&status.state) {
            seen.push(status.state);
        }
        if done(&status) {
            eprintln!("job {id}: {what} after {:?}: {status:?}", start.elapsed());
            return Ok(status);
        }
        anyhow::ensure!(
            start.elapsed() < JOB_DEADLINE,
            "job {id} never {what}: {status:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

pub(super) fn ended(s: &JobStatus) -> bool {
    !matches!(s.state, JobState::Pending | JobState::Running)
}

/// Shims in `dir` that run `bin_dir`'s commands through `exec` (the submit host).
fn write_shims(dir: &std::path::Path, exec: &str, bin_dir: &str) {
    use std::os::unix::fs::PermissionsExt;
    let prefix: Vec<String> = exec.split_whitespace().map(sh_quote).collect();
    let prefix = prefix.join(" ");
    let bin = |p: &str| sh_quote(&format!("{}/{p}", bin_dir.trim_end_matches('/')));
    let plain = |p: &str| format!("#!/bin/sh\nexec {prefix} {} \"$@\"\n", bin(p));
    // qsub's last argument is a file on this machine: it goes over stdin into a file there.
    let qsub = format!(
        "#!/bin/bash\nfile=\"${{!#}}\"\nset -- \"${{@:1:$#-1}}\"\nexec {prefix} sh -c {} {} \"$@\" < \"$file\"\n",
        sh_quote(
            "f=$(mktemp) || exit 125; cat >\"$f\"; \"$0\" \"$@\" \"$f\"; r=$?; rm -f \"$f\"; exit $r"
        ),
        bin("qsub")
    );
    for (name, text) in [
        ("qsub", qsub),
        ("qstat", plain("qstat")),
        ("qdel", plain("qdel")),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

fn commands(shims: &tempfile::TempDir) -> Commands {
    let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
    let Some(bin_dir) = var("NSH_TEST_PBS_BIN_DIR") else {
        panic!(
            "set NSH_TEST_PBS_BIN_DIR (and NSH_TEST_PBS_EXEC to run on the testbed) to run \
             against real PBS commands"
        );
    };
    match var("NSH_TEST_PBS_EXEC") {
        Some(exec) => {
            write_shims(shims.path(), &exec, &bin_dir);
            Commands::Local {
                bin_dir: Some(shims.path().to_string_lossy().into_owned()),
                run_as: None,
            }
        }
        None => Commands::Local {
            bin_dir: Some(bin_dir),
            run_as: None,
        },
    }
}

#[tokio::test]
#[ignore = "needs the testbed's Torque wrappers; see the module doc"]
async fn against_the_torque_wrappers() {
    let shims = tempfile::tempdir().unwrap();
    let pbs = Pbs::new(commands(&shims), None);
    let dialect = pbs.dialect().await.unwrap();
    eprintln!("{}", pbs.describe());
    assert_eq!(dialect, super::Dialect::SlurmWrappers);
    let mut submitted = Vec::new();
    let outcome = scenario(&pbs, &mut submitted).await;
    for id in &submitted {
        pbs.cancel(id).await.unwrap();
    }
    outcome.unwrap();
}

async fn scenario<R: RunCommand>(pbs: &Pbs<R>, submitted: &mut Vec<JobId>) -> anyhow::Result<()> {
    // A short job: through the queue to its end, on a node, with its environment.
    // /var/tmp: shared by the testbed's hosts (/tmp and /scratch are per host).
    let mark = format!("/var/tmp/nsh-pbs-test-{}", std::process::id());
    let script = format!(
        "#!/bin/sh\necho \"$NSH_PBS_MARK $(pwd)\" > {}\nsleep 3\nexit 7\n",
        sh_quote(&mark)
    );
    let resources = [("walltime", "00:05:00"), ("ncpus", "1")];
    let id = pbs.submit(&job("exit7", &script, &resources)).await?;
    submitted.push(id.clone());
    let mut seen = Vec::new();
    let running = wait_for(pbs, &id, "started", &mut seen, |s| {
        s.state != JobState::Pending
    })
    .await?;
    anyhow::ensure!(
        matches!(running.host.as_deref(), Some("node1" | "node2")),
        "{running:?}"
    );
    let raw = raw_qstat(pbs, &id).await?;
    anyhow::ensure!(
        raw.contains("Resource_List.walltime = 00:05:00"),
        "both resources reach the wrapper: {raw}"
    );
    let done = wait_for(pbs, &id, "ended", &mut seen, ended).await?;
    eprintln!("job {id}: states seen {seen:?}");
    anyhow::ensure!(seen.contains(&JobState::Running), "{seen:?}");
    // The wrappers print no exit status: an end, but not how.
    anyhow::ensure!(
        done.state == JobState::Failed && done.end == Some(crate::scheduler::EndReason::Other),
        "{done:?}"
    );
    let written = run_there(pbs, "cat", std::slice::from_ref(&mark)).await?;
    anyhow::ensure!(
        written.trim() == "a,b 'c' /tmp",
        "the job wrote {written:?}"
    );
    let _ = run_there(pbs, "rm", &["-f".into(), mark]).await;

    // A long job: running, cancelled, cancelled again.
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
    let cancelled = wait_for(pbs, &id, "cancelled", &mut seen, ended).await?;
    anyhow::ensure!(
        matches!(cancelled.state, JobState::Failed | JobState::Unknown),
        "{cancelled:?}"
    );
    pbs.cancel(&id).await?;

    // An id the scheduler never gave out.
    let unknown = pbs.status(&JobId("999999".into())).await?;
    anyhow::ensure!(unknown.state == JobState::Unknown, "{unknown:?}");
    pbs.cancel(&JobId("999999".into())).await?;
    Ok(())
}

/// `qstat -f ID` as printed, to see what the wrapper made of the options.
pub(super) async fn raw_qstat<R: RunCommand>(pbs: &Pbs<R>, id: &JobId) -> anyhow::Result<String> {
    let args = vec!["-f".to_owned(), id.0.clone()];
    let out = pbs
        .runner
        .run(Invocation {
            program: "qstat",
            args: &args,
            env: &[],
            stdin: None,
            stdin_as_file: false,
        })
        .await?;
    Ok(out.stdout_text())
}

/// A plain command on the submit host (through `NSH_TEST_PBS_EXEC`), or here.
async fn run_there<R: RunCommand>(
    _pbs: &Pbs<R>,
    program: &str,
    args: &[String],
) -> anyhow::Result<String> {
    let exec = std::env::var("NSH_TEST_PBS_EXEC").unwrap_or_default();
    let mut words: Vec<&str> = exec.split_whitespace().collect();
    words.push(program);
    let (first, rest) = words.split_first().expect("a program");
    let out = tokio::process::Command::new(first)
        .args(rest)
        .args(args)
        .output()
        .await?;
    anyhow::ensure!(out.status.success(), "{program} {args:?}: {out:?}");
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
