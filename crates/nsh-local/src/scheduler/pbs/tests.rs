//! The backend end to end over a fake [`RunCommand`] that answers by command line with
//! captured output (`fixtures/`: OpenPBS 23.06 and Slurm's Torque wrappers 26.05).

use std::sync::Mutex;

use super::Pbs;
use crate::scheduler::commands::{CommandError, CommandOutput, Invocation, RunCommand};
use crate::scheduler::{EndReason, ErrorKind, JobId, JobParams, JobSpec, JobState, Scheduler};

/// One command as the fake saw it.
#[derive(Debug, Clone)]
struct Call {
    line: String,
    env: Vec<(String, String)>,
    stdin: Option<String>,
    stdin_as_file: bool,
}

enum Answer {
    Output(CommandOutput),
    Unreachable,
}

#[derive(Default)]
struct Fake {
    /// Command line → answers, used in turn (the last one repeats).
    answers: Mutex<Vec<(String, Vec<Answer>)>>,
    calls: Mutex<Vec<Call>>,
}

fn fixture(name: &str) -> CommandOutput {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/scheduler/pbs/fixtures");
    let read = |ext: &str| std::fs::read(format!("{dir}/{name}.{ext}")).unwrap_or_default();
    let rc = String::from_utf8_lossy(&read("rc")).trim().parse().ok();
    CommandOutput {
        status: rc,
        stdout: read("stdout"),
        stderr: read("stderr"),
    }
}

fn output(status: i32, stdout: &str, stderr: &str) -> CommandOutput {
    CommandOutput {
        status: Some(status),
        stdout: stdout.as_bytes().to_vec(),
        stderr: stderr.as_bytes().to_vec(),
    }
}

impl Fake {
    fn on(self, line: &str, answer: CommandOutput) -> Self {
        self.answer(line, Answer::Output(answer))
    }

    fn answer(self, line: &str, answer: Answer) -> Self {
        {
            let mut answers = self.answers.lock().unwrap();
            match answers.iter_mut().find(|(l, _)| l == line) {
                Some((_, list)) => list.push(answer),
                None => answers.push((line.to_owned(), vec![answer])),
            }
        }
        self
    }

    fn openpbs() -> Self {
        Fake::default().on("qstat --version", fixture("openpbs-23.06-version"))
    }

    fn wrappers() -> Self {
        Fake::default().on("qstat --version", fixture("wrappers-26.05-version"))
    }

    fn lines(&self) -> Vec<String> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .map(|c| c.line.clone())
            .collect()
    }
}

impl RunCommand for Fake {
    async fn run(&self, inv: Invocation<'_>) -> Result<CommandOutput, CommandError> {
        let mut line = inv.program.to_owned();
        for a in inv.args {
            line.push(' ');
            line.push_str(a);
        }
        self.calls.lock().unwrap().push(Call {
            line: line.clone(),
            env: inv.env.to_vec(),
            stdin: inv.stdin.map(|s| String::from_utf8_lossy(s).into_owned()),
            stdin_as_file: inv.stdin_as_file,
        });
        let mut answers = self.answers.lock().unwrap();
        let Some((_, list)) = answers.iter_mut().find(|(l, _)| *l == line) else {
            return Ok(output(99, "", &format!("fake: no answer for `{line}`")));
        };
        let answer = if list.len() > 1 {
            list.remove(0)
        } else {
            list.swap_remove(0).clone_back(list)
        };
        match answer {
            Answer::Output(out) => Ok(out),
            Answer::Unreachable => Err(CommandError::Unreachable("ssh: connection refused".into())),
        }
    }

    fn describe(&self) -> String {
        "on the fake".into()
    }
}

impl Answer {
    /// The last answer stays for later calls.
    fn clone_back(self, list: &mut Vec<Answer>) -> Answer {
        let copy = match &self {
            Answer::Output(out) => Answer::Output(out.clone()),
            Answer::Unreachable => Answer::Unreachable,
        };
        list.push(copy);
        self
    }
}

fn job(resources: &[(&str, &str)]) -> JobSpec {
    JobSpec {
        name: "nsh-hello-2.12.1".into(),
        script: "#!/bin/sh\nexec nsh-remote\n".into(),
        environment: vec![("PATH".into(), "/usr/bin:/bin".into())],
        working_dir: "/scratch/nsh".into(),
        params: JobParams::Pbs(
            resources
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
        ),
        exclude_hosts: Vec::new(),
    }
}

fn id(s: &str) -> JobId {
    JobId(s.into())
}

const QSUB_OPENPBS: &str = "qsub -N nsh-hello-2.12 -r n -o /dev/null -e /dev/null -f -l ncpus=2";

#[tokio::test]
async fn openpbs_submit_status_and_cancel() {
    let fake = Fake::openpbs()
        .on(QSUB_OPENPBS, fixture("openpbs-23.06-qsub"))
        .on(
            "qstat -x -f -F json 17.pbshost",
            fixture("openpbs-23.06-exit7.x-json"),
        )
        .on(
            "qstat -x -f -F json 21.pbshost",
            fixture("openpbs-23.06-running.x-json"),
        )
        .on("qdel 21.pbshost", output(0, "", ""))
        .on("qdel -W force 21.pbshost", output(0, "", ""))
        .on("qdel 16.pbshost", fixture("openpbs-23.06-qdel-finished"))
        .on("qdel 9999.pbshost", fixture("openpbs-23.06-qdel-unknown"));
    let pbs = Pbs::new(fake, None);
    assert_eq!(
        pbs.describe(),
        "PBS (dialect not known yet), commands on the fake (pbs.conf's server)"
    );
    let got = pbs.submit(&job(&[("ncpus", "2")])).await.unwrap();
    assert_eq!(got, id("16.pbshost"));
    let qsub = pbs.runner.calls.lock().unwrap()[1].clone();
    assert!(qsub.stdin_as_file && qsub.env.is_empty(), "{qsub:?}");
    assert_eq!(
        qsub.stdin.as_deref(),
        Some(
            "#!/bin/sh\nexport PATH='/usr/bin:/bin'\ncd '/scratch/nsh' || exit 1\nexec nsh-remote\n"
        )
    );

    let done = pbs.status(&id("17.pbshost")).await.unwrap();
    assert_eq!(
        (done.state, done.end, done.exit_code, done.host.as_deref()),
        (
            JobState::Finished,
            Some(EndReason::Exited),
            Some(7),
            Some("pbshost")
        )
    );
    let running = pbs.status(&id("21.pbshost")).await.unwrap();
    assert_eq!((running.state, running.in_queue), (JobState::Running, true));

    pbs.cancel(&id("21.pbshost")).await.unwrap();
    pbs.cancel(&id("21.pbshost")).await.unwrap();
    pbs.cancel(&id("16.pbshost")).await.unwrap();
    pbs.cancel(&id("9999.pbshost")).await.unwrap();
    let lines = pbs.runner.lines();
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.as_str() == "qstat --version")
            .count(),
        1
    );
    assert!(
        lines.contains(&"qdel -W force 21.pbshost".to_owned()),
        "{lines:?}"
    );
    assert!(
        pbs.describe().contains("OpenPBS/PBS Professional 23.06.06"),
        "{}",
        pbs.describe()
    );
}

#[tokio::test]
async fn without_job_history_a_live_job_is_asked_for_without_x_and_an_ended_one_vanishes() {
    let fake = Fake::openpbs()
        .on(
            "qstat -x -f -F json 15.pbshost",
            fixture("openpbs-23.06-nohistory-running.x-json"),
        )
        .on(
            "qstat -f -F json 15.pbshost",
            fixture("openpbs-23.06-nohistory-running.plain-json"),
        )
        .on(
            "qstat -f -F json 15.pbshost",
            fixture("openpbs-23.06-nohistory-gone.plain-json"),
        );
    let pbs = Pbs::new(fake, None);
    let first = pbs.status(&id("15.pbshost")).await.unwrap();
    assert_eq!(
        (first.state, first.host.as_deref()),
        (JobState::Running, Some("pbshost"))
    );
    let gone = pbs.status(&id("15.pbshost")).await.unwrap();
    assert_eq!((gone.state, gone.in_queue), (JobState::Unknown, false));
    let lines = pbs.runner.lines();
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("qstat -x")).count(),
        1,
        "history off is remembered: {lines:?}"
    );
}

#[tokio::test]
async fn history_turned_on_later_is_noticed() {
    let fake = Fake::openpbs()
        .on(
            "qstat -x -f -F json 15.pbshost",
            fixture("openpbs-23.06-nohistory-running.x-json"),
        )
        .on(
            "qstat -x -f -F json 15.pbshost",
            fixture("openpbs-23.06-exit7.x-json"),
        )
        .on(
            "qstat -f -F json 15.pbshost",
            fixture("openpbs-23.06-nohistory-running.plain-json"),
        )
        .on(
            "qstat -f -F json 15.pbshost",
            fixture("openpbs-23.06-exit7.plain-json"),
        );
    let pbs = Pbs::new(fake, None);
    assert_eq!(
        pbs.status(&id("15.pbshost")).await.unwrap().state,
        JobState::Running
    );
    let done = pbs.status(&id("15.pbshost")).await.unwrap();
    assert_eq!((done.state, done.exit_code), (JobState::Finished, Some(7)));
}

#[tokio::test]
async fn json_that_does_not_parse_falls_back_to_text() {
    let fake = Fake::openpbs()
        .on(
            "qstat -x -f -F json 17.pbshost",
            output(0, "{\"Jobs\": {\"17.pbshost\": {\"comment\": \"\\q\"", ""),
        )
        .on(
            "qstat -x -f 17.pbshost",
            fixture("openpbs-23.06-exit7.x-text"),
        );
    let pbs = Pbs::new(fake, None);
    let done = pbs.status(&id("17.pbshost")).await.unwrap();
    assert_eq!((done.state, done.exit_code), (JobState::Finished, Some(7)));
}

#[tokio::test]
async fn a_configured_server_reaches_every_command() {
    let fake = Fake::openpbs()
        .on(
            "qsub -N nsh-hello-2.12 -r n -o /dev/null -e /dev/null -f -q @pbs1:15002",
            output(0, "3.pbs1\n", ""),
        )
        .on(
            "qstat -x -f -F json 3.pbs1@pbs1:15002",
            fixture("openpbs-23.06-held.x-json"),
        )
        .on("qdel 3.pbs1@pbs1:15002", output(0, "", ""));
    let pbs = Pbs::new(fake, Some("pbs1:15002".into()));
    let got = pbs.submit(&job(&[])).await.unwrap();
    let held = pbs.status(&got).await.unwrap();
    assert_eq!((held.state, held.in_queue), (JobState::Pending, true));
    pbs.cancel(&got).await.unwrap();
    let calls = pbs.runner.calls.lock().unwrap().clone();
    for call in &calls[1..] {
        assert_eq!(
            call.env,
            vec![
                ("PBS_SERVER".to_owned(), "pbs1".to_owned()),
                ("PBS_BATCH_SERVICE_PORT".to_owned(), "15002".to_owned())
            ],
            "{call:?}"
        );
    }
    assert!(
        pbs.describe().contains("server pbs1:15002"),
        "{}",
        pbs.describe()
    );

    let bad = Pbs::new(Fake::openpbs(), Some("-oProxyCommand=x".into()));
    let err = bad.submit(&job(&[])).await.unwrap_err();
    assert!(format!("{err:#}").contains("pbs-host"), "{err:#}");
    assert_eq!(bad.runner.lines(), vec!["qstat --version".to_owned()]);
}

#[tokio::test]
async fn error_kinds() {
    let limit = "qsub: Maximum number of jobs for user root already in complex\n";
    let fake = Fake::openpbs()
        .on(QSUB_OPENPBS, fixture("openpbs-23.06-qsub-bad-uid"))
        .on(QSUB_OPENPBS, output(38, "", limit))
        .on(QSUB_OPENPBS, output(0, "Job 7.vm submitted\n", ""))
        .answer(QSUB_OPENPBS, Answer::Unreachable)
        .on(
            "qstat -x -f -F json 8.vm",
            output(1, "", "qstat: cannot connect to server vm (errno=15010)\n"),
        );
    let pbs = Pbs::new(fake, None);
    let spec = job(&[("ncpus", "2")]);
    let kinds = [
        ErrorKind::Auth,
        ErrorKind::Refused,
        ErrorKind::Other,
        ErrorKind::Transient,
    ];
    for want in kinds {
        let err = pbs.submit(&spec).await.unwrap_err();
        let text = format!("{err:#}");
        assert_eq!(pbs.error_kind(&err), want, "{text}");
        assert!(
            text.contains("qsub") && text.contains("on the fake"),
            "{text}"
        );
        if want != ErrorKind::Transient {
            assert!(text.contains("nsh-hello-2.12"), "{text}");
        }
    }
    let err = pbs.status(&id("8.vm")).await.unwrap_err();
    assert_eq!(pbs.error_kind(&err), ErrorKind::Transient, "{err:#}");
    assert!(format!("{err:#}").contains("job 8.vm"), "{err:#}");
}

#[tokio::test]
async fn nothing_runs_for_a_bad_id_or_bad_resources() {
    let pbs = Pbs::new(Fake::openpbs(), None);
    for bad in ["7; rm -rf /", "-W", "", "7.vm extra"] {
        assert!(pbs.status(&id(bad)).await.is_err(), "{bad}");
        assert!(pbs.cancel(&id(bad)).await.is_err(), "{bad}");
    }
    let err = pbs
        .submit(&job(&[("ncpus", "2,prologue=/tmp/x")]))
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("ncpus"), "{err:#}");
    let err = pbs.submit(&job(&[("mem", "$(id)")])).await.unwrap_err();
    assert!(format!("{err:#}").contains("mem"), "{err:#}");
    let lines = pbs.runner.lines();
    assert!(lines.iter().all(|l| l == "qstat --version"), "{lines:?}");
}

#[tokio::test]
async fn slurm_wrappers() {
    let fake = Fake::wrappers()
        .on(
            "qsub -N nsh-hello-2.12 -r n -o /dev/null -e /dev/null -l ncpus=1,walltime=00:10:00",
            fixture("wrappers-26.05-qsub-sleep"),
        )
        .on("qstat -f 3", fixture("wrappers-26.05-held"))
        .on("qstat -f 1", fixture("wrappers-26.05-running"))
        .on("qstat -f 1", fixture("wrappers-26.05-running-after-qdel"))
        .on("qstat -f 999999", fixture("wrappers-26.05-unknown"))
        .on("qdel 1", output(0, "", ""))
        .on("qdel 1", fixture("wrappers-26.05-qdel-again"))
        .on("qdel 999999", fixture("wrappers-26.05-qdel-unknown"));
    let pbs = Pbs::new(fake, None);
    let got = pbs
        .submit(&job(&[("ncpus", "1"), ("walltime", "00:10:00")]))
        .await
        .unwrap();
    assert_eq!(got, id("1"));
    let held = pbs.status(&id("3")).await.unwrap();
    assert_eq!((held.state, held.host), (JobState::Pending, None));
    let running = pbs.status(&id("1")).await.unwrap();
    assert_eq!(
        (running.state, running.host.as_deref()),
        (JobState::Running, Some("node1"))
    );
    let ended = pbs.status(&id("1")).await.unwrap();
    assert_eq!(
        (ended.state, ended.end, ended.exit_code, ended.in_queue),
        (JobState::Failed, Some(EndReason::Other), None, false)
    );
    assert_eq!(
        pbs.status(&id("999999")).await.unwrap().state,
        JobState::Unknown
    );
    pbs.cancel(&id("1")).await.unwrap();
    pbs.cancel(&id("1")).await.unwrap();
    pbs.cancel(&id("999999")).await.unwrap();
    let lines = pbs.runner.lines();
    assert!(!lines.iter().any(|l| l.contains("force")), "{lines:?}");
    assert!(
        pbs.describe().contains("Slurm's Torque wrappers"),
        "{}",
        pbs.describe()
    );
}

#[tokio::test]
async fn an_unknown_qstat_is_a_clear_error() {
    let fake = Fake::default().on("qstat --version", output(1, "", "qstat: what?\n"));
    let pbs = Pbs::new(fake, None);
    let err = pbs.status(&id("1")).await.unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("qstat --version") && text.contains("scheduler-bin-dir"),
        "{text}"
    );
    assert!(text.contains("qstat: what?"), "{text}");
}
