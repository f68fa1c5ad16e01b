//! `state-dir` and its alias, `login-host`, `scheduler-bin-dir`, the PBS server settings, and
//! what each scheduler does with settings it does not use.

use super::*;

#[test]
fn state_dir_and_its_old_name_are_one_setting() {
    let c = ok("slurm-state-dir = /a\nstate-dir = /b/");
    assert_eq!(c.state_dir.as_deref(), Some("/b"));
    assert_eq!(c.origins["state-dir"], "/etc/nix/nsh.conf");
    assert!(!c.origins.contains_key("slurm-state-dir"));
    let c = ok("state-dir = /b\nslurm-state-dir = /a");
    assert_eq!(c.state_dir.as_deref(), Some("/a"));
    // The old name set empty unsets the new one: the error names the setting by its name.
    let e = ok(&format!("{}slurm-state-dir =\n", slurm_ok()))
        .validate()
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("nsh.conf: 'state-dir' is required"), "{e}");
    let e = err("slurm-state-dir = ~/.nsh");
    assert!(
        e.contains("for 'slurm-state-dir'"),
        "the key as written: {e}"
    );
    assert!(err("state-dir = rel").contains("for 'state-dir': expected an absolute path"));
    assert!(err("stat-dir = /x").ends_with("(did you mean 'state-dir'?)"));
    assert!(err("extra-state-dir = /x").contains("cannot take the 'extra-' prefix"));
}

#[test]
fn login_host_is_a_host_name_or_alias() {
    assert_eq!(ok("").login_host, None);
    assert_eq!(ok("login-host =").login_host, None);
    assert_eq!(
        ok("login-host = pbs-login.example.org")
            .login_host
            .as_deref(),
        Some("pbs-login.example.org")
    );
    assert_eq!(
        ok("login-host = login1").login_host.as_deref(),
        Some("login1")
    );
    for bad in [
        "root@login1",
        "-oProxyCommand=id",
        "login1:22",
        "a..b",
        "h/x",
    ] {
        let e = err(&format!("login-host = {bad}"));
        assert!(
            e.contains("bad value") && e.contains("'login-host'") && e.contains("without 'user@'"),
            "{bad}: {e}"
        );
        assert!(!e.contains('\n'), "{e}");
    }
    assert!(err("login-host = a b").contains("'login-host'"));
}

#[test]
fn login_host_with_slurm_rest_is_an_error() {
    let e = ok(&format!("{}login-host = login1\n", slurm_ok()))
        .validate()
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "nsh.conf: /etc/nix/nsh.conf: login-host is set but job-scheduler = slurm (the default) \
         does not use it: it talks to slurmrestd over HTTP (slurm-api-host) and runs no \
         scheduler commands; remove login-host, or set job-scheduler = slurm-cli"
    );
    ok("job-scheduler = pbs\nstate-dir = /s\nlogin-host = login1")
        .validate()
        .unwrap();
    // A hand-built Config is re-checked too.
    let c = Config {
        job_scheduler: JobScheduler::Pbs,
        state_dir: Some("/s".into()),
        login_host: Some("-oProxyCommand=id".into()),
        ..Config::default()
    };
    assert!(
        c.validate()
            .unwrap_err()
            .to_string()
            .contains("'login-host'")
    );
}

#[test]
fn scheduler_bin_dir() {
    assert_eq!(ok("").scheduler_bin_dir, None);
    assert_eq!(
        ok("scheduler-bin-dir = /opt/pbs/bin/")
            .scheduler_bin_dir
            .as_deref(),
        Some("/opt/pbs/bin")
    );
    assert_eq!(ok("scheduler-bin-dir =").scheduler_bin_dir, None);
    let e = err("scheduler-bin-dir = opt/pbs/bin");
    assert!(
        e.contains(
            "'scheduler-bin-dir': expected an absolute directory holding the scheduler's commands"
        ),
        "{e}"
    );
}

#[test]
fn pbs_needs_a_state_dir_but_no_token() {
    let c = ok("job-scheduler = pbs\nstate-dir = /home/u/.nsh");
    c.validate().unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let e = ok("job-scheduler = pbs")
        .validate()
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(
            "nsh.conf: 'state-dir' is required when job-scheduler = pbs (set at /etc/nix/nsh.conf)"
        ),
        "{e}"
    );
}

#[test]
fn pbs_port_without_pbs_host() {
    let pbs = "job-scheduler = pbs\nstate-dir = /s\n";
    let e = ok(&format!("{pbs}pbs-port = 15002"))
        .validate()
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("nsh.conf: /etc/nix/nsh.conf: pbs-port is set but pbs-host is not"),
        "{e}"
    );
    assert!(e.contains("set pbs-host too, or remove pbs-port"), "{e}");
    ok(&format!("{pbs}pbs-port = 15002\npbs-host = server1"))
        .validate()
        .unwrap();
    ok(pbs).validate().unwrap();
    // Another scheduler does not read pbs-*: no error.
    ok(&format!("{}pbs-port = 15002\n", slurm_ok()))
        .validate()
        .unwrap();
}

#[test]
fn pbs_warns_about_the_slurm_settings_it_ignores() {
    let c = ok(&format!(
        "job-scheduler = pbs\nslurm-state-dir = /s\nslurm-api-host = h\n{}",
        "slurm-jwt-token = x\n"
    ));
    c.validate().unwrap();
    assert_eq!(
        c.warnings,
        vec![
            "nsh.conf: warning: /etc/nix/nsh.conf: slurm-api-host is set but job-scheduler = pbs does not use it",
            "nsh.conf: warning: /etc/nix/nsh.conf: slurm-jwt-token is set but job-scheduler = pbs does not use it",
        ]
    );
    assert!(!c.warnings.iter().any(|w| w.contains("state-dir")));
    let c = ok(&format!("{}scheduler-bin-dir = /opt/pbs/bin\n", slurm_ok()));
    c.validate().unwrap();
    assert_eq!(c.warnings.len(), 1);
    assert!(c.warnings[0].contains("scheduler-bin-dir is set but job-scheduler = slurm"));
    let c = ok("job-scheduler = slurm-native\nlogin-host = l1\nscheduler-bin-dir =");
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    assert!(c.warnings[0].contains("login-host is set but job-scheduler = slurm-native"));
}

#[test]
fn remote_store_auto_is_none() {
    assert_eq!(ok("remote-store = auto").remote_store, None);
    assert_eq!(
        ok("remote-store = daemon").remote_store.as_deref(),
        Some("daemon")
    );
    assert_eq!(
        ok("remote-store = /local/store\nremote-store = auto").remote_store,
        None
    );
}

#[test]
fn api_version_is_checked_as_the_rest_client_reads_it() {
    assert_eq!(
        ok("slurm-api-version = v0.0.042")
            .slurm_api_version
            .as_deref(),
        Some("v0.0.42"),
        "stored in the spelling the client compares"
    );
    for bad in ["v0.0.99", "v0.0.1", "v0.0.999", "0.0.42", "v0.0.42 x"] {
        let e = err(&format!("slurm-api-version = {bad}"));
        assert!(e.contains("from v0.0.38 to v0.0.45"), "{bad}: {e}");
    }
}

#[test]
fn job_user_and_root_jobs() {
    assert_eq!(ok("").job_user, None);
    assert!(!ok("").allow_root_jobs);
    let c = ok("job-user = alice\nallow-root-jobs = yes");
    assert_eq!(c.job_user.as_deref(), Some("alice"));
    assert!(c.allow_root_jobs);
    assert_eq!(
        ok("job-user = _svc.nsh-1").job_user.as_deref(),
        Some("_svc.nsh-1")
    );
    for bad in [
        "1000",
        "-oalice",
        "al ice",
        "alice;id",
        "a/b",
        &"a".repeat(33),
    ] {
        let e = err(&format!("job-user = {bad}"));
        assert!(
            e.contains("for 'job-user': expected a user name"),
            "{bad}: {e}"
        );
    }
    // Through a login host the ssh user decides: job-user there is a contradiction.
    let e = ok("job-scheduler = slurm-cli\nstate-dir = /s\nlogin-host = l1\njob-user = alice")
        .validate()
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("job-user is set together with login-host"),
        "{e}"
    );
    ok("job-scheduler = slurm-cli\nstate-dir = /s\njob-user = alice")
        .validate()
        .unwrap();
    // libslurm runs no commands: a login host would do nothing.
    let e = ok("job-scheduler = slurm-native\nstate-dir = /s\nlogin-host = l1")
        .validate()
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("libslurm talks to slurmctld from this machine"),
        "{e}"
    );
    // The REST backend's jobs are the token's user's: job-user there is only a warning.
    let c = ok(&format!("{}job-user = alice\n", slurm_ok()));
    c.validate().unwrap();
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("job-user is set but job-scheduler = slurm")),
        "{:?}",
        c.warnings
    );
}
