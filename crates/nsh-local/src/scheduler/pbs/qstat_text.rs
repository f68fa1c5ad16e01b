//! `qstat -f ID` as text: OpenPBS/PBS Professional without `-F json`, Torque, and Slurm's
//! Torque wrappers.
//!
//! ```plain
//! Job Id: 8.pbshost                    OpenPBS, Torque: "Job Id: ", attributes indented by
//!     Job_Name = nsh-x                 four spaces, long values wrapped onto lines that
//!     comment = Job run at … terminate start with a tab (cut anywhere, even mid-word)
//! <TAB>d by pbsuser@pbshost
//! Job Id:<TAB>633                      the wrappers: "Job Id:<TAB>", attributes indented
//! <TAB>job_state = R                   by a tab, no wrapping
//! ```
//!
//! The indent of the first attribute line is the attribute indent; any other indented line
//! continues the value before it.

use super::status::Attrs;

/// The attributes of the job `id` in `text`; `None` if the text lists no job at all.
/// With several jobs listed, the one whose id matches (`7` or `7.server`).
pub fn parse(text: &str, id: &str) -> Option<Attrs> {
    let jobs = jobs(text);
    if jobs.len() == 1 {
        return jobs.into_iter().next().map(|(_, attrs)| attrs);
    }
    jobs.into_iter()
        .find(|(job, _)| super::same_job(job, id))
        .map(|(_, attrs)| attrs)
}

fn jobs(text: &str) -> Vec<(String, Attrs)> {
    let mut jobs: Vec<(String, Attrs)> = Vec::new();
    let mut indent: Option<String> = None;
    let mut last_key: Option<String> = None;
    for line in text.lines() {
        if let Some(id) = line.strip_prefix("Job Id:") {
            jobs.push((id.trim().to_owned(), Attrs::new()));
            indent = None;
            last_key = None;
            continue;
        }
        let Some((_, attrs)) = jobs.last_mut() else {
            continue;
        };
        let body = line.trim_start();
        if body.is_empty() {
            last_key = None;
            continue;
        }
        let lead = &line[..line.len() - body.len()];
        if lead.is_empty() {
            continue;
        }
        let attr_indent = indent.get_or_insert_with(|| lead.to_owned());
        if lead == attr_indent.as_str()
            && let Some((key, value)) = body.split_once(" = ")
        {
            let key = key.trim().to_owned();
            attrs.insert(key.clone(), value.to_owned());
            last_key = Some(key);
            continue;
        }
        // A continuation: the wrap took the line break only, and one tab was added.
        if let Some(value) = last_key.as_ref().and_then(|k| attrs.get_mut(k)) {
            value.push_str(line.strip_prefix('\t').unwrap_or(body));
        }
    }
    jobs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openpbs_wrapped_values() {
        let text = include_str!("fixtures/openpbs-23.06-exit7.x-text.stdout");
        let attrs = parse(text, "17.pbshost").unwrap();
        assert_eq!(attrs["job_state"], "F");
        assert_eq!(attrs["exec_host"], "pbshost/0");
        assert_eq!(attrs["substate"], "93");
        assert_eq!(attrs["Exit_status"], "7");
        assert_eq!(
            attrs["comment"],
            "Job run at Wed Dec 02 at 03:22 on (pbshost:ncpus=1) and failed"
        );
        assert!(
            attrs["Submit_arguments"].ends_with("-l walltime=00:10:00 /tmp/openpbs/jobs/exit7.sh"),
            "{}",
            attrs["Submit_arguments"]
        );
        assert!(attrs["Variable_List"].contains("PBS_O_HOST=pbshost"));
    }

    #[test]
    fn openpbs_held_without_history() {
        let text = include_str!("fixtures/openpbs-23.06-nohistory-held.plain-text.stdout");
        let attrs = parse(text, "7").unwrap();
        assert_eq!(
            (attrs["job_state"].as_str(), attrs["substate"].as_str()),
            ("H", "20")
        );
    }

    #[test]
    fn nothing_listed() {
        assert_eq!(parse("", "8.pbshost"), None);
        assert_eq!(
            parse("qstat: Unknown Job Id 8.pbshost\n", "8.pbshost"),
            None
        );
    }
}
