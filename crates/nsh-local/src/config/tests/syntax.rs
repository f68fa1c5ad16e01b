//! Defaults, the nix.conf grammar, `extra-`, unknown keys and their suggestions.
use super::*;

#[test]
fn defaults() {
    let c = Config::default();
    assert_eq!(c.job_scheduler, JobScheduler::Slurm);
    assert_eq!(c.system, "x86_64-linux");
    assert_eq!(c.system_features, vec!["nsh"]);
    assert!(c.mandatory_system_features.is_empty());
    assert_eq!(c.store_dir, "/nix/store");
    assert_eq!(c.remote_store, None);
    assert_eq!(c.remote_nix_bin_dir, None);
    assert!(!c.collect_garbage);
    assert_eq!(c.max_resubmits, 2);
    assert_eq!(c.state_dir, None);
    assert_eq!(c.login_host, None);
    assert_eq!(c.scheduler_bin_dir, None);
    assert_eq!(c.slurm_api_host, "localhost");
    assert_eq!(c.slurm_api_port, 6820);
    assert_eq!(c.slurm_api_version, None);
    assert!(c.slurm_jwt_token.is_none());
    assert!(c.slurm_extra_submission_params.is_empty());
    assert_eq!(c.slurm_conf, None);
    assert_eq!(c.pbs_host, None);
    assert_eq!(c.pbs_port, 15001);
    assert!(c.origins.is_empty() && c.warnings.is_empty());
}

#[test]
fn empty_text_gives_defaults() {
    let c = ok("");
    assert_eq!(c.system_features, vec!["nsh"]);
    assert_eq!(c.files_read, vec!["/etc/nix/nsh.conf"]);
}

#[test]
fn every_setting_parses() {
    let c = ok(r#"
job-scheduler = slurm-native
system = aarch64-linux
system-features = nsh big-parallel kvm
mandatory-system-features = nsh
store-dir = /gpfs/nix/store
remote-store = /local/store
remote-nix-bin-dir = /shared/nix/bin/
collect-garbage = true
state-dir = /home/u/.nsh/
slurm-api-host = slurm.example.org
slurm-api-port = 6821
slurm-api-version = v0.0.42
slurm-extra-submission-params = {"partition": "debug", "qos": "low"}
slurm-conf = /etc/slurm/slurm.conf
pbs-host = pbs.example.org
pbs-port = 15002
"#);
    assert_eq!(c.job_scheduler, JobScheduler::SlurmNative);
    assert_eq!(c.system, "aarch64-linux");
    assert_eq!(c.system_features, vec!["nsh", "big-parallel", "kvm"]);
    assert_eq!(c.mandatory_system_features, vec!["nsh"]);
    assert_eq!(c.store_dir, "/gpfs/nix/store");
    assert_eq!(c.remote_store.as_deref(), Some("/local/store"));
    assert_eq!(c.remote_nix_bin_dir.as_deref(), Some("/shared/nix/bin"));
    assert!(c.collect_garbage);
    assert_eq!(c.state_dir.as_deref(), Some("/home/u/.nsh"));
    assert_eq!(c.slurm_api_host, "slurm.example.org");
    assert_eq!(c.slurm_api_port, 6821);
    assert_eq!(c.slurm_api_version.as_deref(), Some("v0.0.42"));
    assert_eq!(c.slurm_extra_submission_params["partition"], "debug");
    assert_eq!(c.slurm_extra_submission_params.len(), 2);
    assert_eq!(c.slurm_conf, Some(PathBuf::from("/etc/slurm/slurm.conf")));
    assert_eq!(c.pbs_host.as_deref(), Some("pbs.example.org"));
    assert_eq!(c.pbs_port, 15002);
    c.validate().unwrap();
}

#[test]
fn empty_values_mean_unset() {
    let c = ok(
        "remote-nix-bin-dir =\nslurm-api-version =\nslurm-extra-submission-params =\npbs-host =\nslurm-conf =\nsystem-features =",
    );
    assert_eq!(c.remote_nix_bin_dir, None);
    assert_eq!(c.slurm_api_version, None);
    assert!(c.slurm_extra_submission_params.is_empty());
    assert_eq!(c.pbs_host, None);
    assert_eq!(c.slurm_conf, None);
    assert!(c.system_features.is_empty());
}

#[test]
fn comments_blank_lines_and_whitespace() {
    let c = ok(
        "# a comment\n\n   \n\tsystem\t=\taarch64-linux   # trailing\r\nslurm-api-host = h # x = y\n#system = i686-linux\n",
    );
    assert_eq!(c.system, "aarch64-linux");
    assert_eq!(c.slurm_api_host, "h");
}

#[test]
fn values_are_tokens_joined_by_single_spaces() {
    let c = ok("system-features =   a\t\tb    c  \nmandatory-system-features = a a b");
    assert_eq!(c.system_features, vec!["a", "b", "c"]);
    assert_eq!(c.mandatory_system_features, vec!["a", "b"]);
    let c = ok(r#"slurm-extra-submission-params = {"comment":   "two   spaces"}"#);
    assert_eq!(c.slurm_extra_submission_params["comment"], "two spaces");
}

#[test]
fn equals_needs_spaces_like_nix() {
    let e = err("\n\nsystem=aarch64-linux");
    assert_eq!(
        e,
        "nsh.conf: /etc/nix/nsh.conf:3: expected 'key = value' with spaces around '=', found 'system=aarch64-linux'"
    );
    assert!(err("system =aarch64-linux").contains("spaces around '='"));
}

#[test]
fn line_without_equals() {
    let e = err("system aarch64-linux");
    assert_eq!(
        e,
        "nsh.conf: /etc/nix/nsh.conf:1: expected 'key = value', 'include PATH' or '!include PATH', found 'system aarch64-linux'"
    );
    assert!(err("lonely").contains(":1: expected 'key = value'"));
}

#[test]
fn later_definitions_override_earlier() {
    let c = ok("system = a-b\nsystem = c-d\nsystem-features = x\nsystem-features = y");
    assert_eq!(c.system, "c-d");
    assert_eq!(c.system_features, vec!["y"]);
    // A text source is recorded by name only; files get `path:line` (see the include tests).
    assert_eq!(c.origins["system"], "/etc/nix/nsh.conf");
}

#[test]
fn extra_prefix_appends_to_lists() {
    let c = ok("extra-system-features = kvm big-parallel\nextra-mandatory-system-features = nsh");
    assert_eq!(c.system_features, vec!["nsh", "kvm", "big-parallel"]);
    assert_eq!(c.mandatory_system_features, vec!["nsh"]);
    let c = ok("system-features = a\nextra-system-features = b\nsystem-features = c");
    assert_eq!(c.system_features, vec!["c"]);
}

#[test]
fn extra_prefix_on_scalar_is_an_error() {
    assert_eq!(
        err("extra-store-dir = /x"),
        "nsh.conf: /etc/nix/nsh.conf:1: 'extra-store-dir' cannot take the 'extra-' prefix; only list settings can (system-features, mandatory-system-features, allowed-job-params)"
    );
}

#[test]
fn unknown_key_with_suggestion() {
    assert_eq!(
        err("\n\nslurm-api-hots = x"),
        "nsh.conf: /etc/nix/nsh.conf:3: unknown setting 'slurm-api-hots' (did you mean 'slurm-api-host'?)"
    );
    assert!(err("slurm_state_dir = /x").ends_with("(did you mean 'slurm-state-dir'?)"));
    assert!(err("Collect-Garbage = true").ends_with("(did you mean 'collect-garbage'?)"));
    assert!(err("extra-system-feature = x").ends_with("(did you mean 'extra-system-features'?)"));
    assert!(err("slurm-jwt-tokn = x").ends_with("(did you mean 'slurm-jwt-token'?)"));
}

#[test]
fn unknown_key_without_suggestion() {
    assert_eq!(
        err("builders = @/etc/nix/machines"),
        "nsh.conf: /etc/nix/nsh.conf:1: unknown setting 'builders'"
    );
    assert_eq!(
        err("extra-foo = x"),
        "nsh.conf: /etc/nix/nsh.conf:1: unknown setting 'extra-foo'"
    );
}
