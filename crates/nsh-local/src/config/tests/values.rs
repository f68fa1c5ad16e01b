//! Bad values: each parser's error names the setting and what it expected.
use super::*;

#[test]
fn bad_bool() {
    assert_eq!(
        err("collect-garbage = maybe"),
        "nsh.conf: /etc/nix/nsh.conf:1: bad value 'maybe' for 'collect-garbage': expected true or false"
    );
    for (text, want) in [
        ("true", true),
        ("yes", true),
        ("1", true),
        ("false", false),
        ("no", false),
        ("0", false),
    ] {
        assert_eq!(
            ok(&format!("collect-garbage = {text}")).collect_garbage,
            want
        );
    }
    assert!(err("collect-garbage = True").contains("bad value 'True'"));
    assert!(err("collect-garbage =").contains("bad value ''"));
}

#[test]
fn max_queued_jobs() {
    assert_eq!(Config::default().max_queued_jobs, 0);
    assert_eq!(ok("max-queued-jobs = 3").max_queued_jobs, 3);
    assert_eq!(ok("max-queued-jobs = 0").max_queued_jobs, 0);
    for bad in ["-1", "three", "", "1.5"] {
        let e = err(&format!("max-queued-jobs = {bad}"));
        assert!(
            e.contains("bad value") && e.contains("expected a number of jobs"),
            "{e}"
        );
    }
}

#[test]
fn max_resubmits() {
    assert_eq!(ok("max-resubmits = 0").max_resubmits, 0);
    assert_eq!(ok("max-resubmits = 5").max_resubmits, 5);
    assert_eq!(
        err("max-resubmits = many"),
        "nsh.conf: /etc/nix/nsh.conf:1: bad value 'many' for 'max-resubmits': expected a whole \
         number from 0 (never resubmit) to 20, e.g. max-resubmits = 2"
    );
    for bad in ["-1", "21", "1.5", ""] {
        assert!(
            err(&format!("max-resubmits = {bad}")).contains("bad value"),
            "{bad}"
        );
    }
}

#[test]
fn bad_port() {
    assert_eq!(
        err("slurm-api-port = 70000"),
        "nsh.conf: /etc/nix/nsh.conf:1: bad value '70000' for 'slurm-api-port': expected a TCP port number from 1 to 65535"
    );
    for bad in [
        "0",
        "-1",
        "+80",
        "http",
        "",
        "68 20",
        "99999999999999999999999",
    ] {
        assert!(
            err(&format!("slurm-api-port = {bad}")).contains("expected a TCP port"),
            "{bad}"
        );
        assert!(
            err(&format!("pbs-port = {bad}")).contains("'pbs-port'"),
            "{bad}"
        );
    }
    assert_eq!(ok("slurm-api-port = 65535").slurm_api_port, 65535);
    assert_eq!(ok("pbs-port = 1").pbs_port, 1);
}

#[test]
fn bad_scheduler() {
    assert_eq!(
        err("job-scheduler = SLURM"),
        "nsh.conf: /etc/nix/nsh.conf:1: bad value 'SLURM' for 'job-scheduler': expected one of slurm, slurm-native, slurm-cli, pbs"
    );
    assert_eq!(ok("job-scheduler = pbs").job_scheduler, JobScheduler::Pbs);
}

#[test]
fn bad_json() {
    let e = err("slurm-extra-submission-params = {partition: debug}");
    assert!(e.starts_with("nsh.conf: /etc/nix/nsh.conf:1: bad value '{partition: debug}' for 'slurm-extra-submission-params': expected a JSON object"), "{e}");
    assert!(e.contains("invalid JSON"), "{e}");
    let e = err(r#"slurm-extra-submission-params = ["a"]"#);
    assert!(e.contains("got a JSON array"), "{e}");
    let long = format!(
        r#"slurm-extra-submission-params = {{"comment": "{}"#,
        "x".repeat(500)
    );
    let e = err(&long);
    let quoted = e.split('\'').nth(1).unwrap();
    assert!(quoted.chars().count() <= 60, "{quoted}");
    assert!(!e.contains(&"x".repeat(61)));
}

#[test]
fn bad_paths() {
    for bad in [
        "nix/store",
        "/nix/store/",
        "/",
        "/nix//store",
        "/nix/./store",
        "/nix/../store",
        "/my store",
    ] {
        assert!(
            err(&format!("store-dir = {bad}"))
                .contains("expected an absolute path without a trailing slash"),
            "{bad}"
        );
    }
    assert!(err("slurm-state-dir = ~/.nsh").contains("'~' is not expanded"));
    assert!(err("slurm-state-dir = .nsh").contains("expected an absolute path"));
    assert!(err("remote-nix-bin-dir = bin").contains("'remote-nix-bin-dir'"));
    assert!(err("slurm-conf = slurm.conf").contains("'slurm-conf'"));
    assert!(err("remote-store = ./store").contains("'remote-store'"));
    assert!(err("remote-store =").contains("'remote-store'"));
    assert_eq!(
        ok("remote-store = ssh-ng://host?x=1")
            .remote_store
            .as_deref(),
        Some("ssh-ng://host?x=1")
    );
    assert_eq!(ok("state-dir = /").state_dir.as_deref(), Some("/"));
}

#[test]
fn bad_host_system_and_version() {
    assert!(err("slurm-api-host = http://localhost").contains("without 'http://'"));
    assert!(err("slurm-api-host = localhost:6820").contains("slurm-api-port"));
    assert_eq!(ok("slurm-api-host = ::1").slurm_api_host, "::1");
    assert!(err("system = x86_64").contains("Nix system type"));
    assert!(err("slurm-api-version = 0.0.42").contains("v0.0.42"));
    assert!(err("slurm-api-version = v0.0.").contains("'slurm-api-version'"));
    assert!(err("slurm-api-version = v0.0.4x").contains("'slurm-api-version'"));
    assert_eq!(
        ok("slurm-api-version = v0.0.40")
            .slurm_api_version
            .as_deref(),
        Some("v0.0.40")
    );
}

#[test]
fn long_values_are_cut() {
    let e = err(&format!("system = {}", "y".repeat(200)));
    assert!(e.contains(&format!("'{}...'", "y".repeat(57))), "{e}");
    assert!(!e.contains(&"y".repeat(58)));
}
