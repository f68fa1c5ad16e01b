//! Settings the chosen scheduler requires.
use super::*;

#[test]
fn missing_state_dir_for_slurm() {
    let s = Scratch::new();
    s.write("etc-nix/nsh.conf", &format!("slurm-jwt-token = {TOKEN}\n"));
    let e = load_with(&env_in(&s)).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "nsh.conf: 'state-dir' is required when job-scheduler = slurm (the default); set it to a directory every cluster node can see, e.g. state-dir = /home/<user>/.nsh (read: {})",
            s.path("etc-nix/nsh.conf")
        )
    );
}

#[test]
fn missing_with_no_files_lists_where_it_looked() {
    let s = Scratch::new();
    let e = load_with(&env_in(&s)).unwrap_err().to_string();
    assert!(e.contains("no nsh.conf was found; looked for: "), "{e}");
    assert!(
        e.contains(&s.path("etc-nix/nsh.conf")) && e.contains(&s.path("home/.config/nix/nsh.conf")),
        "{e}"
    );
}

#[test]
fn missing_per_scheduler() {
    let e = ok("job-scheduler = slurm\nslurm-state-dir = /s")
        .validate()
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("nsh.conf: 'slurm-jwt-token' is required when job-scheduler = slurm (set at /etc/nix/nsh.conf)"), "{e}");
    let e = ok("job-scheduler = slurm-native")
        .validate()
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("nsh.conf: 'state-dir' is required when job-scheduler = slurm-native"),
        "{e}"
    );
    ok("job-scheduler = slurm-native\nslurm-state-dir = /s")
        .validate()
        .unwrap();
    let e = ok("job-scheduler = pbs")
        .validate()
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("nsh.conf: 'state-dir' is required when job-scheduler = pbs"),
        "{e}"
    );
    // No token needed for PBS.
    ok("job-scheduler = pbs\nstate-dir = /s")
        .validate()
        .unwrap();
    ok(&slurm_ok()).validate().unwrap();
    // An empty token counts as unset.
    let e = ok("slurm-state-dir = /s\nslurm-jwt-token =")
        .validate()
        .unwrap_err()
        .to_string();
    assert!(e.contains("'slurm-jwt-token' is required"));
}

#[test]
fn validate_rejects_hand_built_nonsense() {
    let mut c = Config {
        job_scheduler: JobScheduler::Pbs,
        ..Config::default()
    };
    c.pbs_port = 0;
    assert_eq!(
        c.validate().unwrap_err().to_string(),
        "nsh.conf: bad value for 'pbs-port': expected a TCP port number from 1 to 65535"
    );
    c.pbs_port = 1;
    c.store_dir = "relative".into();
    assert!(
        c.validate()
            .unwrap_err()
            .to_string()
            .contains("'store-dir'")
    );
}
