//! Odd input never panics; suggestions; the job-parameter lists.
use super::*;

#[test]
fn no_panic_on_odd_input() {
    let odd = [
        "=",
        "= =",
        "# only",
        "\u{0}",
        "é = ü",
        "key = \u{7}",
        "extra- = x",
        "extra-",
        "!include",
        "include \u{0}",
        "system-features = \u{200b}",
        "\r\r\r",
        "a\u{85}b = c",
        "slurm-extra-submission-params = {\"a\":",
        "slurm-extra-submission-params = 1e999999",
    ];
    for text in odd {
        let _ = parse_str(text, "x");
    }
    let mut seed: u32 = 12345;
    let alphabet: Vec<char> = "ab=# \t\r\n-!includextr{}\"é\u{0}/~.:01v".chars().collect();
    for _ in 0..2000 {
        let len = (seed % 40) as usize;
        let mut text = String::new();
        for _ in 0..len {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            text.push(alphabet[(seed >> 16) as usize % alphabet.len()]);
        }
        let _ = parse_str(&text, "fuzz");
    }
}

#[test]
fn suggestion_distance() {
    assert_eq!(edit_distance("slurm-api-hots", "slurm-api-host"), 1);
    assert_eq!(edit_distance("", "abc"), 3);
    assert_eq!(edit_distance("kitten", "sitting"), 3);
    assert_eq!(suggest("sytem").as_deref(), Some("system"));
    assert_eq!(suggest("zzzzzzzzzz"), None);
}

#[test]
fn allowed_job_params_set_append_and_reset() {
    let c = ok("extra-allowed-job-params = mail_type");
    assert_eq!(c.allowed_job_params, None);
    assert_eq!(c.extra_allowed_job_params, vec!["mail_type"]);
    let c = ok("allowed-job-params = cpus_per_task partition\nextra-allowed-job-params = qos");
    assert_eq!(
        c.allowed_job_params,
        Some(vec!["cpus_per_task".to_string(), "partition".to_string()])
    );
    assert_eq!(c.extra_allowed_job_params, vec!["qos"]);
    let c = ok("extra-allowed-job-params = qos\nallowed-job-params =");
    assert_eq!(c.allowed_job_params, Some(vec![]));
    assert!(c.extra_allowed_job_params.is_empty());
}

#[test]
fn allowed_job_params_refuses_fields_nsh_owns() {
    let e = err("extra-allowed-job-params = qos script");
    assert!(e.contains("`script` is a job field nsh sets itself"), "{e}");
    let e = err("allowed-job-params = a;b");
    assert!(e.contains("'a;b' is not one"), "{e}");
}

#[test]
fn extra_submission_params_cannot_name_fields_nsh_owns() {
    for key in [
        "script",
        "environment",
        "standard_output",
        "current_working_directory",
        "user_id",
    ] {
        let e = err(&format!("slurm-extra-submission-params = {{\"{key}\": 1}}"));
        assert!(e.contains(&format!("without `{key}`")), "{e}");
    }
    let c = ok("slurm-extra-submission-params = {\"partition\": \"debug\"}");
    assert_eq!(c.slurm_extra_submission_params["partition"], "debug");
}
