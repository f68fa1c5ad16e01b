//! What `sbatch` is given and what it answers.
//!
//! ```plain
//! sbatch [extraSlurmParams options…] [--exclude=…] --parsable --job-name=NAME --chdir=DIR
//!        --output=/dev/null --error=/dev/null --no-requeue --export=NIL   < SCRIPT
//! ```
//!
//! nsh's own options come last, so they win over anything before them. `--export=NIL`
//! (22.05+) gives the job only Slurm's `SLURM_*` variables, not the hook's environment
//! (which may hold `NSH_CONFIG` with secrets) and, unlike `--export=NONE`, without running
//! the user's login shell on the node to load one; the job's own environment (PATH…) is
//! exported by the script itself, as the PBS backend does.

use crate::scheduler::JobSpec;

/// Longest job id accepted from `sbatch`.
const MAX_JOB_ID: usize = 20;

/// `name` as a job name nsh can read back from `scontrol show job -o`: letters, digits and
/// `_ . - +`; anything else becomes `_`.
pub fn job_name(name: &str) -> String {
    let out: String = name
        .chars()
        .take(100)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '+') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() {
        "nsh".to_owned()
    } else {
        out
    }
}

/// sbatch's arguments: the job's parameter options, then nsh's own.
pub fn sbatch_args(job: &JobSpec, options: &[String]) -> Vec<String> {
    let mut args = super::params::with_excluded(options, &job.exclude_hosts);
    args.extend([
        "--parsable".to_owned(),
        format!("--job-name={}", job_name(&job.name)),
        format!("--chdir={}", job.working_dir),
        "--output=/dev/null".to_owned(),
        "--error=/dev/null".to_owned(),
        "--no-requeue".to_owned(),
        "--export=NIL".to_owned(),
    ]);
    args
}

/// The job id in `sbatch --parsable`'s stdout: `ID` or `ID;cluster`, one line.
pub fn job_id(stdout: &str) -> Result<String, String> {
    let lines: Vec<&str> = stdout
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let [line] = lines.as_slice() else {
        return Err(format!(
            "expected one line with the job id, got {} lines",
            lines.len()
        ));
    };
    let id = line.split_once(';').map_or(*line, |(id, _)| id);
    if is_job_id(id) {
        Ok(id.to_owned())
    } else {
        Err(format!(
            "'{}' is not a Slurm job id (digits, optionally ';cluster')",
            crate::scheduler::commands::printable(line)
        ))
    }
}

/// A plain numeric job id, as nsh submits them (no arrays, no het jobs).
pub fn is_job_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_JOB_ID && id.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::JobParams;

    #[test]
    fn ids() {
        for (out, id) in [("7\n", "7"), ("123;cluster1\n", "123"), (" 9 \n\n", "9")] {
            assert_eq!(job_id(out).as_deref(), Ok(id), "{out:?}");
        }
        for bad in [
            "",
            "7\n8\n",
            "Submitted batch job 7",
            "-7",
            "7_1",
            "x;7",
            "7 8",
        ] {
            assert!(job_id(bad).is_err(), "{bad:?}");
        }
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src/scheduler/slurm_cli/fixtures"
        );
        for generation in ["sid", "bookworm"] {
            let out =
                std::fs::read_to_string(format!("{dir}/{generation}-sbatch-ok.stdout")).unwrap();
            assert!(job_id(&out).is_ok(), "{generation}: {out:?}");
        }
    }

    #[test]
    fn own_options_last_and_names_plain() {
        let job = JobSpec {
            name: "nsh-hello 2.12/$(id)".into(),
            script: String::new(),
            environment: Vec::new(),
            working_dir: "/".into(),
            params: JobParams::SlurmCli(Vec::new()),
            exclude_hosts: vec!["node2".into()],
        };
        let opts = vec!["--cpus-per-task=2".to_owned(), "--exclude=node3".to_owned()];
        assert_eq!(
            sbatch_args(&job, &opts).join(" "),
            "--cpus-per-task=2 --exclude=node3,node2 --parsable --job-name=nsh-hello_2.12___id_ \
             --chdir=/ --output=/dev/null --error=/dev/null --no-requeue --export=NIL"
        );
    }
}
