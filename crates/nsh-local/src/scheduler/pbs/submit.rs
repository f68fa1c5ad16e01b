//! What `qsub` is given: the job's name, the script with its environment and working
//! directory written into it, and the options per dialect; and the job id it answers.
//!
//! ```plain
//! qsub -N NAME -r n -o /dev/null -e /dev/null [-f] [-q @SERVER] -l R=V … SCRIPT-FILE
//! ```
//!
//! - `-f` (foreground) only on OpenPBS/PBS Professional, where plain `qsub` leaves a
//!   per-user background daemon behind; Torque's `-f` means "fault tolerant" and the Slurm
//!   wrappers reject it.
//! - The environment goes into the script as `export` lines, not `-v`, which splits on
//!   commas.
//! - Slurm's wrappers keep only the last `-l`, so there the resources go as one
//!   comma-joined `-l` (their values hold no comma: see `params.rs`). The wrappers also run
//!   `sbatch` through a shell with the options unquoted, which is one reason resource values
//!   are held to a small character set.

use anyhow::{Result, bail};

use super::Dialect;
use crate::job_script::sh_quote;
use crate::scheduler::JobSpec;

/// PBS's limit on a job name that every version accepts.
pub const MAX_JOB_NAME: usize = 15;

/// Longest job id accepted from `qsub` (`<seq>.<server>`, a host name at most).
const MAX_JOB_ID: usize = 255;

/// `name` as a PBS job name: letters, digits, `_`, `.` and `-`, starting with a letter, at
/// most [`MAX_JOB_NAME`] characters. Other characters become `_`.
pub fn job_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if !out.starts_with(|c: char| c.is_ascii_alphabetic()) {
        out.insert(0, 'n');
    }
    out.truncate(MAX_JOB_NAME);
    // A name cut after a '.' or '-' reads as cut off.
    let kept = out.trim_end_matches(['.', '-']).len().max(1);
    out.truncate(kept);
    out
}

/// The job script with `export NAME='value'` lines and `cd DIR` after its `#!` line and
/// any comment lines right after it (`#PBS` directives count only before the first command).
pub fn script(job: &JobSpec) -> Result<String> {
    let mut out = String::new();
    let mut rest = job.script.as_str();
    if !rest.starts_with("#!") {
        out.push_str("#!/bin/sh\n");
    }
    while rest.starts_with('#') {
        let (line, after) = rest.split_once('\n').unwrap_or((rest, ""));
        out.push_str(line);
        out.push('\n');
        rest = after;
    }
    for (name, value) in &job.environment {
        let plausible = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !plausible {
            bail!(
                "job '{}': environment variable name '{}' cannot be exported by a shell \
                 (letters, digits and '_' only); this is a bug in nsh's job setup",
                job.name,
                name.escape_debug()
            );
        }
        out.push_str(&format!("export {name}={}\n", sh_quote(value)));
    }
    out.push_str(&format!("cd {} || exit 1\n", sh_quote(&job.working_dir)));
    out.push_str(rest);
    Ok(out)
}

/// `qsub`'s arguments before the script file (which the runner appends).
pub fn qsub_args(
    dialect: &Dialect,
    name: &str,
    resources: &[(String, String)],
    destination: Option<&str>,
) -> Vec<String> {
    let mut args: Vec<String> = ["-N", name, "-r", "n", "-o", "/dev/null", "-e", "/dev/null"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    if matches!(dialect, Dialect::OpenPbs { .. }) {
        args.push("-f".into());
    }
    if let Some(dest) = destination {
        args.push("-q".into());
        args.push(format!("@{dest}"));
    }
    let pairs = resources.iter().map(|(n, v)| format!("{n}={v}"));
    if matches!(dialect, Dialect::SlurmWrappers) {
        let joined = pairs.collect::<Vec<_>>().join(",");
        if !joined.is_empty() {
            args.push("-l".into());
            args.push(joined);
        }
    } else {
        for pair in pairs {
            args.push("-l".into());
            args.push(pair);
        }
    }
    args
}

/// The job id in `qsub`'s stdout: one line, `<seq>[.<server>]` or an array
/// `<seq>[].<server>`; anything else is refused (the id later reaches command lines and
/// messages).
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
    if is_job_id(line) {
        Ok((*line).to_owned())
    } else {
        Err(format!(
            "'{}' is not a PBS job id (digits, optionally '[]' and '.server')",
            super::status::printable(line)
        ))
    }
}

/// `7`, `7.server`, `12[].server.example`, `12[3].server`.
pub fn is_job_id(id: &str) -> bool {
    if id.is_empty() || id.len() > MAX_JOB_ID {
        return false;
    }
    let (seq, server) = match id.split_once('.') {
        Some((seq, server)) => (seq, Some(server)),
        None => (id, None),
    };
    let digits = seq.split('[').next().unwrap_or_default();
    let index = &seq[digits.len()..];
    let index_ok = index.is_empty()
        || index
            .strip_prefix('[')
            .and_then(|i| i.strip_suffix(']'))
            .is_some_and(|i| i.bytes().all(|b| b.is_ascii_digit()));
    let server_ok = server.is_none_or(|s| crate::scheduler::check_host_name(s).is_ok());
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) && index_ok && server_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::JobParams;

    fn spec(script: &str) -> JobSpec {
        JobSpec {
            name: "hello".into(),
            script: script.into(),
            environment: vec![
                ("PATH".into(), "/usr/bin:/bin".into()),
                ("NSH_X".into(), "a,b 'c'".into()),
            ],
            working_dir: "/scratch/it's".into(),
            params: JobParams::Pbs(Vec::new()),
            exclude_hosts: Vec::new(),
        }
    }

    #[test]
    fn names() {
        assert_eq!(job_name("nsh-hello-1.0"), "nsh-hello-1.0");
        assert_eq!(job_name("7zip"), "n7zip");
        assert_eq!(job_name("a b/c$(id)"), "a_b_c__id_");
        assert_eq!(
            job_name("nsh-a-very-long-derivation-name").len(),
            MAX_JOB_NAME
        );
        assert_eq!(job_name("nsh-hello-2.12.1"), "nsh-hello-2.12");
        assert_eq!(job_name(""), "n");
    }

    #[test]
    fn environment_and_directory_go_after_the_shebang() {
        let s = script(&spec("#!/bin/bash -e\nexec agent\n")).unwrap();
        assert_eq!(
            s,
            "#!/bin/bash -e\nexport PATH='/usr/bin:/bin'\nexport NSH_X='a,b '\\''c'\\'''\n\
             cd '/scratch/it'\\''s' || exit 1\nexec agent\n"
        );
        let s = script(&spec("exec agent\n")).unwrap();
        assert!(s.starts_with("#!/bin/sh\nexport PATH="), "{s}");
        let s = script(&spec("#!/bin/sh\n#PBS -l ncpus=1\n# note\necho hi\n")).unwrap();
        assert!(
            s.starts_with("#!/bin/sh\n#PBS -l ncpus=1\n# note\nexport PATH="),
            "{s}"
        );
        assert!(s.ends_with("|| exit 1\necho hi\n"), "{s}");
        let mut bad = spec("#!/bin/sh\n");
        bad.environment.push(("A;B".into(), "x".into()));
        assert!(script(&bad).unwrap_err().to_string().contains("A;B"));
    }

    #[test]
    fn options_per_dialect() {
        let res = vec![
            ("ncpus".to_owned(), "2".to_owned()),
            ("walltime".to_owned(), "01:00:00".to_owned()),
        ];
        let open = Dialect::OpenPbs {
            version: "23.06.06".into(),
            json: true,
        };
        assert_eq!(
            qsub_args(&open, "nsh-x", &res, Some("pbs1:15001")).join(" "),
            "-N nsh-x -r n -o /dev/null -e /dev/null -f -q @pbs1:15001 -l ncpus=2 -l \
             walltime=01:00:00"
        );
        let torque = Dialect::Torque {
            version: "6.1.3".into(),
        };
        assert!(!qsub_args(&torque, "n", &res, None).contains(&"-f".to_owned()));
        assert_eq!(
            qsub_args(&Dialect::SlurmWrappers, "nsh-x", &res, None).join(" "),
            "-N nsh-x -r n -o /dev/null -e /dev/null -l ncpus=2,walltime=01:00:00"
        );
        assert!(!qsub_args(&Dialect::SlurmWrappers, "n", &[], None).contains(&"-l".to_owned()));
    }

    #[test]
    fn job_ids() {
        for ok in [
            "7.vm",
            "633",
            "12[].server",
            "12[3].pbs.example.org",
            "1007.submit",
        ] {
            assert_eq!(job_id(&format!("{ok}\n")).as_deref(), Ok(ok), "{ok}");
        }
        for bad in [
            "",
            "7.vm\n8.vm\n",
            "job 7 submitted",
            "-7",
            "7.-oProxyCommand=x",
            "7;id",
            "7.vm extra",
            "[1].vm",
            "7[x].vm",
            "Submitted batch job 7",
        ] {
            assert!(job_id(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            job_id(include_str!("fixtures/openpbs-23.06-qsub.stdout")).as_deref(),
            Ok("16.pbshost")
        );
        assert_eq!(
            job_id(include_str!("fixtures/wrappers-26.05-qsub-sleep.stdout")).as_deref(),
            Ok("1")
        );
    }
}
