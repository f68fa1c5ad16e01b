//! The backend end to end over a fake [`RunCommand`] that answers by command line with
//! output captured on the testbed (`fixtures/`: `sid-*` Slurm 26.05, `bookworm-*` 22.05).

use std::sync::Mutex;

use serde_json::json;

use super::SlurmCli;
use super::params::sbatch_options;
use crate::scheduler::commands::{CommandError, CommandOutput, Invocation, RunCommand};
use crate::scheduler::{EndReason, ErrorKind, JobId, JobParams, JobSpec, JobState, Scheduler};

const GENERATIONS: [&str; 2] = ["sid", "bookworm"];

#[derive(Default)]
struct Fake {
    /// Command line → answer (the same every time).
    answers: Vec<(String, Result<CommandOutput, String>)>,
    /// (command line, stdin) of every call.
    calls: Mutex<Vec<(String, Option<String>)>>,
}

fn fixture(name: &str) -> CommandOutput {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/scheduler/slurm_cli/fixtures"
    );
    let read = |ext: &str| std::fs::read(format!("{dir}/{name}.{ext}")).unwrap_or_default();
    let rc = String::from_utf8_lossy(&read("rc")).trim().parse().ok();
    assert!(rc.is_some(), "fixture {name} has no .rc");
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
    fn on(mut self, line: &str, answer: CommandOutput) -> Self {
        self.answers.push((line.to_owned(), Ok(answer)));
        self
    }

    fn unreachable(mut self, line: &str) -> Self {
        self.answers
            .push((line.to_owned(), Err("ssh: connection refused".into())));
        self
    }

    fn lines(&self) -> Vec<String> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .map(|c| c.0.clone())
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
        assert!(inv.env.is_empty() && !inv.stdin_as_file, "{line}");
        let stdin = inv.stdin.map(|s| String::from_utf8_lossy(s).into_owned());
        self.calls.lock().unwrap().push((line.clone(), stdin));
        match self.answers.iter().find(|(l, _)| *l == line) {
            Some((_, Ok(out))) => Ok(out.clone()),
            Some((_, Err(e))) => Err(CommandError::Unreachable(e.clone())),
            None => Ok(output(99, "", &format!("fake: no answer for `{line}`"))),
        }
    }

    fn describe(&self) -> String {
        "on login host fake1".into()
    }
}

fn job(options: &[&str]) -> JobSpec {
    JobSpec {
        name: "nsh-hello-2.12.1".into(),
        script: "#!/bin/sh\nexec nsh-remote\n".into(),
        environment: vec![("PATH".into(), "/usr/bin:/bin".into())],
        working_dir: "/".into(),
        params: JobParams::SlurmCli(options.iter().map(|o| (*o).to_owned()).collect()),
        exclude_hosts: Vec::new(),
    }
}

const OWN: &str = "--parsable --job-name=nsh-hello-2.12.1 --chdir=/ --output=/dev/null \
                   --error=/dev/null --no-requeue --export=NIL";

#[tokio::test]
async fn submit_passes_options_then_own_fields_and_the_environment_in_the_script() {
    for generation in GENERATIONS {
        let line = format!("sbatch --cpus-per-task=2 --mem=512M {OWN}");
        let fake = Fake::default().on(&line, fixture(&format!("{generation}-sbatch-ok")));
        let cli = SlurmCli::new(fake);
        let id = cli
            .submit(&job(&["--cpus-per-task=2", "--mem=512M"]))
            .await
            .unwrap();
        assert!(
            !id.0.is_empty() && id.0.bytes().all(|b| b.is_ascii_digit()),
            "{id}"
        );
        let calls = cli.runner.calls.lock().unwrap().clone();
        assert_eq!(calls.len(), 1);
        let stdin = calls[0].1.as_deref().unwrap();
        assert!(
            stdin.starts_with("#!/bin/sh\nexport PATH='/usr/bin:/bin'\n"),
            "{stdin}"
        );
        assert!(stdin.ends_with("exec nsh-remote\n"), "{stdin}");
    }
}

#[tokio::test]
async fn submit_errors_name_the_command_place_and_job() {
    let line = format!("sbatch --partition=nosuch {OWN}");
    for generation in GENERATIONS {
        let fake = Fake::default().on(&line, fixture(&format!("{generation}-sbatch-badpart")));
        let cli = SlurmCli::new(fake);
        let err = cli.submit(&job(&["--partition=nosuch"])).await.unwrap_err();
        let text = format!("{err:#}");
        for word in [
            "sbatch",
            "login host fake1",
            "nsh-hello-2.12.1",
            "Invalid partition",
        ] {
            assert!(text.contains(word), "{word}: {text}");
        }
        assert_eq!(cli.error_kind(&err), ErrorKind::Other);
    }
    let limit = "sbatch: error: Batch job submission failed: Job violates accounting/QOS \
                 policy (job submit limit, user's size and/or time limits)";
    let cli = SlurmCli::new(Fake::default().on(&format!("sbatch {OWN}"), output(1, "", limit)));
    let err = cli.submit(&job(&[])).await.unwrap_err();
    assert_eq!(cli.error_kind(&err), ErrorKind::Refused);
    let cli = SlurmCli::new(Fake::default().unreachable(&format!("sbatch {OWN}")));
    let err = cli.submit(&job(&[])).await.unwrap_err();
    assert_eq!(cli.error_kind(&err), ErrorKind::Transient);
    let cli = SlurmCli::new(Fake::default().on(&format!("sbatch {OWN}"), output(0, "7 x\n", "")));
    let err = cli.submit(&job(&[])).await.unwrap_err();
    assert!(format!("{err:#}").contains("scancel it by hand"), "{err:#}");
}

#[tokio::test]
async fn a_bad_option_word_is_refused_before_anything_runs() {
    let cli = SlurmCli::new(Fake::default());
    for bad in ["-o/etc/x", "--comment=a b", "--x=\n"] {
        assert!(cli.submit(&job(&[bad])).await.is_err(), "{bad:?}");
    }
    assert!(cli.runner.lines().is_empty());
}

/// Job `id` of fixture `name`, via `scontrol show job -o ID`.
async fn status_of(generation: &str, name: &str, id: &str) -> crate::scheduler::JobStatus {
    let line = format!("scontrol show job -o {id}");
    let fake = Fake::default().on(&line, fixture(&format!("{generation}-{name}")));
    SlurmCli::new(fake).status(&JobId(id.into())).await.unwrap()
}

/// The job id in the first `JobId=` of a fixture.
fn id_in(generation: &str, name: &str) -> String {
    let out = fixture(&format!("{generation}-{name}")).stdout;
    let text = String::from_utf8_lossy(&out);
    let id = text
        .strip_prefix("JobId=")
        .and_then(|t| t.split(' ').next());
    id.unwrap().to_owned()
}

#[tokio::test]
async fn states_from_both_generations() {
    for generation in GENERATIONS {
        let g = generation;
        let s = status_of(g, "show-running", &id_in(g, "show-running")).await;
        assert_eq!(
            (s.state, s.host.as_deref(), s.in_queue),
            (JobState::Running, Some("node1"), true),
            "{g}"
        );
        let s = status_of(g, "show-held", &id_in(g, "show-held")).await;
        assert_eq!(
            (s.state, s.host.as_deref()),
            (JobState::Pending, None),
            "{g}"
        );
        assert_eq!(s.reason.as_deref(), Some("JobHeldUser"), "{g}");
        let s = status_of(g, "show-exit3", &id_in(g, "show-exit3")).await;
        assert_eq!(
            (s.state, s.exit_code, s.end),
            (JobState::Finished, Some(3), Some(EndReason::Exited)),
            "{g}"
        );
        let s = status_of(g, "show-exit0", &id_in(g, "show-exit0")).await;
        assert_eq!(
            (s.state, s.exit_code, s.in_queue),
            (JobState::Finished, Some(0), false),
            "{g}"
        );
        let s = status_of(g, "show-cancelling", &id_in(g, "show-cancelling")).await;
        assert_eq!(
            (s.state, s.in_queue),
            (JobState::Running, true),
            "{g}: COMPLETING"
        );
        let s = status_of(g, "show-cancelled", &id_in(g, "show-cancelled")).await;
        assert_eq!(
            (s.state, s.end, s.signal),
            (JobState::Failed, Some(EndReason::Cancelled), Some(15)),
            "{g}"
        );
        let s = status_of(g, "show-cancelled-held", &id_in(g, "show-cancelled-held")).await;
        assert_eq!(
            (s.state, s.end),
            (JobState::Failed, Some(EndReason::Cancelled)),
            "{g}"
        );
        let s = status_of(g, "show-timeout", &id_in(g, "show-timeout")).await;
        assert_eq!(
            (s.state, s.end),
            (JobState::Failed, Some(EndReason::TimeLimit)),
            "{g}"
        );
        let s = status_of(g, "show-unknown", "999999").await;
        assert_eq!(s.state, JobState::Unknown, "{g}");
    }
}

#[tokio::test]
async fn a_record_of_another_job_or_a_bad_id_is_refused() {
    let id = id_in("sid", "show-running");
    let fake = Fake::default().on("scontrol show job -o 4242", fixture("sid-show-running"));
    let err = SlurmCli::new(fake)
        .status(&JobId("4242".into()))
        .await
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("no line for job 4242"),
        "{err:#} ({id})"
    );
    let cli = SlurmCli::new(Fake::default());
    assert!(cli.status(&JobId("1;id".into())).await.is_err());
    assert!(cli.cancel(&JobId("-1".into())).await.is_err());
    assert!(cli.runner.lines().is_empty());
}

#[tokio::test]
async fn cancel_twice_kills_and_gone_jobs_are_fine() {
    for generation in GENERATIONS {
        let fake = Fake::default()
            .on(
                "scancel 7",
                fixture(&format!("{generation}-scancel-running")),
            )
            .on(
                "scancel --full --signal=KILL 7",
                fixture(&format!("{generation}-scancel-kill-ended")),
            )
            .on(
                "scancel 999999",
                fixture(&format!("{generation}-scancel-unknown")),
            );
        let cli = SlurmCli::new(fake);
        cli.cancel(&JobId("7".into())).await.unwrap();
        cli.cancel(&JobId("7".into())).await.unwrap();
        cli.cancel(&JobId("999999".into())).await.unwrap();
        assert_eq!(
            cli.runner.lines(),
            [
                "scancel 7",
                "scancel --full --signal=KILL 7",
                "scancel 999999"
            ]
        );
    }
    let denied = "scancel: error: Kill job error on job id 7: Access/permission denied";
    let cli = SlurmCli::new(Fake::default().on("scancel 7", output(1, "", denied)));
    let err = cli.cancel(&JobId("7".into())).await.unwrap_err();
    assert_eq!(cli.error_kind(&err), ErrorKind::Auth);
    assert!(format!("{err:#}").contains("cancelling job 7"), "{err:#}");
}

#[tokio::test]
async fn probe_and_names() {
    let fake = Fake::default()
        .on("sbatch --version", fixture("bookworm-version"))
        .on(
            "squeue --noheader --jobs=1",
            fixture("bookworm-squeue-unknown"),
        );
    let cli = SlurmCli::new(fake);
    let line = cli.probe().await.unwrap();
    assert!(
        line.contains("slurm-wlm 22.05.8") && line.contains("login host fake1"),
        "{line}"
    );
    assert_eq!(cli.describe(), "Slurm's commands on login host fake1");
    assert_eq!(cli.name(), "slurm");
    let cli = SlurmCli::new(Fake::default().on("sbatch --version", output(127, "", "not found")));
    assert!(cli.probe().await.is_err());
}

#[test]
fn option_mapping() {
    let params = json!({
        "cpus_per_task": 2,
        "memory_per_node": {"set": true, "number": 2048},
        "memory_per_cpu": 100,
        "time_limit": {"set": true, "infinite": true},
        "partition": "debug",
        "constraints": "ssd&avx2",
        "required_nodes": ["node1", "node2"],
        "excluded_nodes": "node3",
        "exclusive": true,
        "contiguous": false,
        "tasks": "4",
        "tmp_disk_per_node": 1000,
        "gres": "gpu:1",
    });
    let words = sbatch_options(params.as_object().unwrap()).unwrap();
    for w in [
        "--cpus-per-task=2",
        "--mem=2048M",
        "--mem-per-cpu=100M",
        "--time=UNLIMITED",
        "--partition=debug",
        "--constraint=ssd&avx2",
        "--nodelist=node1,node2",
        "--exclude=node3",
        "--exclusive",
        "--ntasks=4",
        "--tmp=1000M",
        "--gres=gpu:1",
    ] {
        assert!(words.iter().any(|x| x == w), "{w}: {words:?}");
    }
    assert!(
        !words.iter().any(|x| x.starts_with("--contiguous")),
        "{words:?}"
    );
    assert_eq!(words.len(), 12, "{words:?}");
}

#[test]
fn unmapped_and_injecting_values_are_refused_by_name() {
    for (params, key) in [
        (json!({"tres_per_node": "gres/gpu:1"}), "tres_per_node"),
        (json!({"minimum_cpus": 2}), "minimum_cpus"),
        (json!({"made_up": 2}), "made_up"),
        (json!({"partition": "--wrap=id"}), "partition"),
        (json!({"partition": "debug --wrap=id"}), "partition"),
        (json!({"comment": ""}), "comment"),
        (json!({"cpus_per_task": -2}), "cpus_per_task"),
        (json!({"cpus_per_task": "2x"}), "cpus_per_task"),
        (
            json!({"memory_per_node": {"set": false, "number": 2}}),
            "memory_per_node",
        ),
        (json!({"required_nodes": ["node1", 2]}), "required_nodes"),
        (json!({"exclusive": "everything"}), "exclusive"),
    ] {
        let err = sbatch_options(params.as_object().unwrap()).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(key) && text.contains("extraSlurmParams"),
            "{params}: {text}"
        );
    }
}

#[test]
fn every_allowed_key_is_mapped_or_refused_with_a_hint() {
    for key in crate::scheduler::job_params::SLURM_REST_ALLOWED {
        let mapped = super::params::MAPPING_KEYS.contains(key);
        let unmapped = super::params::UNMAPPED.iter().any(|(k, _)| k == key);
        assert!(
            mapped ^ unmapped,
            "{key}: mapped {mapped}, unmapped {unmapped}"
        );
    }
}
