//! Tests of nsh.conf loading: syntax, lookup order, every setting, error messages.
use super::*;
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicUsize, Ordering};

const TOKEN: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdW4iOiJ0ZXN0In0.c2VjcmV0LXNpZ25hdHVyZQ";

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("nsh-config-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    /// Writes `rel` (mode 600) and returns its path.
    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.0.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    }

    fn path(&self, rel: &str) -> String {
        self.0.join(rel).display().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn file(path: &Path) -> Source {
    Source::File {
        path: path.to_path_buf(),
        required: true,
    }
}

fn err(text: &str) -> String {
    parse_str(text, "/etc/nix/nsh.conf")
        .unwrap_err()
        .to_string()
}

fn ok(text: &str) -> Config {
    parse_str(text, "/etc/nix/nsh.conf").unwrap()
}

fn slurm_ok() -> String {
    format!("slurm-state-dir = /home/u/.nsh\nslurm-jwt-token = {TOKEN}\n")
}

// ---- defaults ----

#[test]
fn defaults() {
    let c = Config::default();
    assert_eq!(c.job_scheduler, JobScheduler::Slurm);
    assert_eq!(c.system, "x86_64-linux");
    assert_eq!(c.system_features, vec!["nsh"]);
    assert!(c.mandatory_system_features.is_empty());
    assert_eq!(c.store_dir, "/nix/store");
    assert_eq!(c.remote_store, "auto");
    assert_eq!(c.remote_nix_bin_dir, None);
    assert!(!c.collect_garbage);
    assert_eq!(c.max_resubmits, 2);
    assert_eq!(c.slurm_state_dir, None);
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
slurm-state-dir = /home/u/.nsh/
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
    assert_eq!(c.remote_store, "/local/store");
    assert_eq!(c.remote_nix_bin_dir.as_deref(), Some("/shared/nix/bin"));
    assert!(c.collect_garbage);
    assert_eq!(c.slurm_state_dir.as_deref(), Some("/home/u/.nsh"));
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

// ---- syntax ----

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

// ---- unknown keys ----

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

// ---- bad values ----

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
        "nsh.conf: /etc/nix/nsh.conf:1: bad value 'SLURM' for 'job-scheduler': expected one of slurm, slurm-native, pbs"
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
        ok("remote-store = ssh-ng://host?x=1").remote_store,
        "ssh-ng://host?x=1"
    );
    assert_eq!(
        ok("slurm-state-dir = /").slurm_state_dir.as_deref(),
        Some("/")
    );
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

// ---- the token ----

#[test]
fn token_is_secret() {
    let c = ok(&format!("slurm-jwt-token = {TOKEN}"));
    assert_eq!(c.slurm_jwt_token.as_ref().unwrap().expose(), TOKEN);
    let debug = format!("{c:?}");
    assert!(!debug.contains(TOKEN) && !debug.contains("eyJ"), "{debug}");
    assert!(debug.contains("<redacted>"));
    let env = ConfigEnv {
        nsh_config: Some(Secret::new(format!("slurm-jwt-token = {TOKEN}"))),
        ..Default::default()
    };
    assert!(!format!("{env:?}").contains("eyJ"));
}

#[test]
fn token_never_in_messages() {
    let cases = [
        format!("slurm-jwt-token = {TOKEN} extra"),
        format!("slurm-jwt-token = {TOKEN}\u{7f}"),
        format!("slurm-jwt-token={TOKEN}"),
        format!("slurm-jwt-token {TOKEN}"),
        format!("slurm-jwt-tokn = {TOKEN}"),
        format!("slurm_jwt_token={TOKEN}"),
        TOKEN.to_string(),
        format!("{TOKEN} = x"),
        format!("include {TOKEN} x"),
    ];
    for text in &cases {
        let e = parse_str(text, "NSH_CONFIG").unwrap_err();
        for shown in [e.to_string(), format!("{e:?}")] {
            assert!(!shown.contains("eyJ"), "{text} -> {shown}");
            assert!(!shown.contains("c2VjcmV0"), "{text} -> {shown}");
        }
    }
    assert_eq!(
        parse_str(&format!("slurm-jwt-token = {TOKEN} x"), "NSH_CONFIG")
            .unwrap_err()
            .to_string(),
        "nsh.conf: NSH_CONFIG:1: bad value <redacted> for 'slurm-jwt-token': expected a single JWT without spaces or non-ASCII characters"
    );
    assert_eq!(
        parse_str(&format!("slurm-jwt-token={TOKEN}"), "NSH_CONFIG")
            .unwrap_err()
            .to_string(),
        "nsh.conf: NSH_CONFIG:1: expected 'key = value' with spaces around '=', found a line starting with 'slurm-jwt-token' (the rest is not shown because it may hold a secret)"
    );
}

#[test]
fn world_readable_warning_text() {
    assert_eq!(
        world_readable_warning(Path::new("/etc/nix/nsh.conf"), 0o100600),
        None
    );
    assert_eq!(
        world_readable_warning(Path::new("/etc/nix/nsh.conf"), 0o100400),
        None
    );
    assert_eq!(
        world_readable_warning(Path::new("/etc/nix/nsh.conf"), 0o100644).unwrap(),
        "nsh.conf: warning: /etc/nix/nsh.conf sets slurm-jwt-token but is readable by group or others (mode 0644); run 'chmod 600 /etc/nix/nsh.conf'"
    );
    assert!(world_readable_warning(Path::new("/etc/nix/nsh.conf"), 0o640).is_some());
    assert!(
        world_readable_warning(Path::new("/nix/store/abc-nsh.conf"), 0o444)
            .unwrap()
            .contains("out of the Nix store")
    );
}

#[test]
fn world_readable_file_with_token_warns() {
    let s = Scratch::new();
    let private = s.write("private.conf", &format!("slurm-jwt-token = {TOKEN}\n"));
    let public = s.write("nsh.conf", "system = aarch64-linux\ninclude private.conf\n");
    std::fs::set_permissions(&public, std::fs::Permissions::from_mode(0o644)).unwrap();
    // The public file holds no token: no warning.
    let c = load_from(&[file(&public)]).unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o604)).unwrap();
    let c = load_from(&[file(&public)]).unwrap();
    assert_eq!(c.warnings.len(), 1);
    assert!(c.warnings[0].contains(&s.path("private.conf")) && c.warnings[0].contains("0604"));
    assert!(!c.warnings[0].contains("eyJ"));
    // A token in NSH_CONFIG is not a file: nothing to warn about.
    let c = parse_str(&format!("slurm-jwt-token = {TOKEN}"), "NSH_CONFIG").unwrap();
    assert!(c.warnings.is_empty());
}

// ---- includes ----

#[test]
fn include_and_bang_include() {
    let s = Scratch::new();
    s.write(
        "sub/extra.conf",
        "slurm-api-port = 7000\n!include missing.conf\n",
    );
    let main = s.write(
        "nsh.conf",
        "include sub/extra.conf\nsystem = a-b\n!include nope.conf\n",
    );
    let c = load_from(&[file(&main)]).unwrap();
    assert_eq!(c.slurm_api_port, 7000);
    assert_eq!(
        c.origins["slurm-api-port"],
        format!("{}:1", s.path("sub/extra.conf"))
    );
    assert_eq!(
        c.files_read,
        vec![s.path("nsh.conf"), s.path("sub/extra.conf")]
    );
    assert!(c.files_missing.contains(&s.path("sub/missing.conf")));
    assert!(c.files_missing.contains(&s.path("nope.conf")));
}

#[test]
fn include_missing_is_an_error() {
    let s = Scratch::new();
    let main = s.write("nsh.conf", "\ninclude gone.conf\n");
    let e = load_from(&[file(&main)]).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "nsh.conf: {}:2: included file {} not found (use '!include' to skip a missing file)",
            s.path("nsh.conf"),
            s.path("gone.conf")
        )
    );
}

#[test]
fn include_absolute_path_and_override_order() {
    let s = Scratch::new();
    let inc = s.write("abs.conf", "system = inc-luded\n");
    let main = s.write(
        "d/nsh.conf",
        &format!("system = before-x\ninclude {}\n", inc.display()),
    );
    assert_eq!(load_from(&[file(&main)]).unwrap().system, "inc-luded");
    let main = s.write(
        "d/nsh2.conf",
        &format!("include {}\nsystem = after-x\n", inc.display()),
    );
    assert_eq!(load_from(&[file(&main)]).unwrap().system, "after-x");
}

#[test]
fn include_cycle_is_stopped() {
    let s = Scratch::new();
    s.write("a.conf", "include b.conf\n");
    let b = s.write("b.conf", "include a.conf\n");
    let e = load_from(&[file(&b)]).unwrap_err().to_string();
    assert!(e.contains("includes nest more than 16 deep"), "{e}");
    let own = s.write("self.conf", "!include self.conf\n");
    assert!(matches!(
        load_from(&[file(&own)]),
        Err(ConfigError::IncludeTooDeep { .. })
    ));
}

#[test]
fn include_syntax_errors() {
    assert!(err("include").contains("expected 'include PATH' with a single path"));
    assert!(err("!include a b").contains("expected '!include PATH' with a single path"));
    assert!(err("include = x").contains("expected 'include PATH'"));
}

#[test]
fn include_errors_name_the_included_file() {
    let s = Scratch::new();
    s.write("inc.conf", "\n\ncollect-garbage = sometimes\n");
    let main = s.write("nsh.conf", "include inc.conf\n");
    let e = load_from(&[file(&main)]).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!(
            "nsh.conf: {}:3: bad value 'sometimes'",
            s.path("inc.conf")
        )),
        "{e}"
    );
}

#[test]
fn unreadable_and_non_utf8_files_are_errors() {
    let s = Scratch::new();
    let bad = s.0.join("bin.conf");
    std::fs::write(&bad, b"system = \xff\xfe\n").unwrap();
    let e = load_from(&[file(&bad)]).unwrap_err();
    assert!(e.to_string().starts_with("nsh.conf: cannot read "), "{e}");
    let dir = s.0.join("adir");
    std::fs::create_dir_all(&dir).unwrap();
    assert!(load_from(&[file(&dir)]).is_err());
    let missing = s.0.join("none.conf");
    assert!(load_from(&[file(&missing)]).is_err());
    let c = load_from(&[Source::File {
        path: missing,
        required: false,
    }])
    .unwrap();
    assert_eq!(c.files_missing, vec![s.path("none.conf")]);
}

// ---- lookup order ----

fn env_in(s: &Scratch) -> ConfigEnv {
    ConfigEnv {
        nix_conf_dir: Some(s.path("etc-nix")),
        nsh_user_conf_files: None,
        xdg_config_home: None,
        xdg_config_dirs: Some(format!("{}:{}", s.path("xdg1"), s.path("xdg2"))),
        home: Some(s.path("home")),
        nsh_config: None,
    }
}

#[test]
fn user_file_list() {
    let env = ConfigEnv {
        home: Some("/root".into()),
        ..Default::default()
    };
    assert_eq!(
        env.user_files(),
        vec![
            PathBuf::from("/root/.config/nix/nsh.conf"),
            PathBuf::from("/etc/xdg/nix/nsh.conf")
        ]
    );
    assert_eq!(env.system_file(), PathBuf::from("/etc/nix/nsh.conf"));
    let env = ConfigEnv {
        nix_conf_dir: Some(String::new()),
        xdg_config_home: Some("/x".into()),
        xdg_config_dirs: Some(String::new()),
        home: Some("/root".into()),
        ..Default::default()
    };
    assert_eq!(env.user_files(), vec![PathBuf::from("/x/nix/nsh.conf")]);
    assert_eq!(env.system_file(), PathBuf::from("/etc/nix/nsh.conf"));
    let env = ConfigEnv {
        nsh_user_conf_files: Some("/a.conf::/b.conf".into()),
        ..env
    };
    assert_eq!(
        env.user_files(),
        vec![PathBuf::from("/a.conf"), PathBuf::from("/b.conf")]
    );
}

#[test]
fn override_order_system_user_env() {
    let s = Scratch::new();
    s.write(
        "etc-nix/nsh.conf",
        &format!(
            "{}system = sys-tem\nslurm-api-host = sys\npbs-port = 1\nslurm-api-port = 1\n",
            slurm_ok()
        ),
    );
    s.write(
        "xdg2/nix/nsh.conf",
        "slurm-api-host = xdg2\npbs-port = 2\nslurm-api-port = 2\nextra-system-features = two\n",
    );
    s.write(
        "xdg1/nix/nsh.conf",
        "slurm-api-host = xdg1\npbs-port = 3\nextra-system-features = one\n",
    );
    s.write("home/.config/nix/nsh.conf", "slurm-api-host = home\n");
    let mut env = env_in(&s);
    env.nsh_config = Some(Secret::new("system = env-sys\n"));
    let c = load_with(&env).unwrap();
    assert_eq!(c.system, "env-sys");
    assert_eq!(c.origins["system"], "NSH_CONFIG");
    assert_eq!(c.slurm_api_host, "home");
    assert_eq!(c.pbs_port, 3);
    assert_eq!(c.slurm_api_port, 2);
    assert_eq!(c.system_features, vec!["nsh", "two", "one"]);
    assert_eq!(
        c.origins["slurm-api-port"],
        format!("{}:3", s.path("xdg2/nix/nsh.conf"))
    );
    assert_eq!(
        c.files_read,
        vec![
            s.path("etc-nix/nsh.conf"),
            s.path("xdg2/nix/nsh.conf"),
            s.path("xdg1/nix/nsh.conf"),
            s.path("home/.config/nix/nsh.conf"),
            "NSH_CONFIG".to_string(),
        ]
    );
}

#[test]
fn xdg_config_home_and_user_conf_files() {
    let s = Scratch::new();
    s.write("etc-nix/nsh.conf", &slurm_ok());
    s.write("cfg/nix/nsh.conf", "system = cfg-home\n");
    s.write("home/.config/nix/nsh.conf", "system = home-dot-config\n");
    let mut env = env_in(&s);
    env.xdg_config_home = Some(s.path("cfg"));
    assert_eq!(load_with(&env).unwrap().system, "cfg-home");
    // NSH_USER_CONF_FILES replaces the list; its first file wins.
    s.write("u1.conf", "system = first-file\n");
    s.write("u2.conf", "system = second-file\nslurm-api-host = u2\n");
    env.nsh_user_conf_files = Some(format!(
        "{}:{}:{}",
        s.path("u1.conf"),
        s.path("none.conf"),
        s.path("u2.conf")
    ));
    let c = load_with(&env).unwrap();
    assert_eq!(c.system, "first-file");
    assert_eq!(c.slurm_api_host, "u2");
    assert!(c.files_missing.contains(&s.path("none.conf")));
}

#[test]
fn nsh_config_text_and_errors() {
    let s = Scratch::new();
    let mut env = env_in(&s);
    env.nsh_config = Some(Secret::new(format!("{}\nbogus = 1", slurm_ok())));
    assert_eq!(
        load_with(&env).unwrap_err().to_string(),
        "nsh.conf: NSH_CONFIG:4: unknown setting 'bogus'"
    );
    env.nsh_config = Some(Secret::new(slurm_ok()));
    let c = load_with(&env).unwrap();
    assert_eq!(c.files_read, vec!["NSH_CONFIG"]);
    assert_eq!(c.files_missing.len(), 4);
    let text = Source::Text {
        text: "include inc.conf".into(),
        origin: "NSH_CONFIG".into(),
        base_dir: Some(s.0.clone()),
    };
    s.write("inc.conf", "system = from-include\n");
    assert_eq!(load_from(&[text]).unwrap().system, "from-include");
}

// ---- required settings ----

#[test]
fn missing_state_dir_for_slurm() {
    let s = Scratch::new();
    s.write("etc-nix/nsh.conf", &format!("slurm-jwt-token = {TOKEN}\n"));
    let e = load_with(&env_in(&s)).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "nsh.conf: 'slurm-state-dir' is required when job-scheduler = slurm (the default); set it to a directory every cluster node can see, e.g. slurm-state-dir = /home/<user>/.nsh (read: {})",
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
        e.starts_with("nsh.conf: 'slurm-state-dir' is required when job-scheduler = slurm-native"),
        "{e}"
    );
    ok("job-scheduler = slurm-native\nslurm-state-dir = /s")
        .validate()
        .unwrap();
    ok("job-scheduler = pbs").validate().unwrap();
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

// ---- robustness ----

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

// ---- TLS to slurmrestd: slurm-api-scheme, slurm-api-ca-file ----

/// The test CA of `scheduler/slurm_rest/testdata` (see its README).
fn test_ca() -> String {
    concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/scheduler/slurm_rest/testdata/ca.pem"
    )
    .into()
}

#[test]
fn scheme_defaults_to_http_and_takes_https() {
    let c = ok(&slurm_ok());
    assert_eq!(c.slurm_api_scheme, ApiScheme::Http);
    assert_eq!(c.slurm_api_ca_file, None);
    c.validate().unwrap();
    let c = ok(&format!("{}slurm-api-scheme = https\n", slurm_ok()));
    assert_eq!(c.slurm_api_scheme, ApiScheme::Https);
    c.validate().unwrap();
    for bad in ["HTTPS", "tls", "https://", ""] {
        let e = err(&format!("slurm-api-scheme = {bad}"));
        assert!(
            e.contains("bad value")
                && e.contains("'slurm-api-scheme'")
                && e.contains("http or https"),
            "{e}"
        );
    }
}

#[test]
fn misspelt_tls_settings_get_a_suggestion() {
    assert!(err("slurm-api-shceme = https").contains("(did you mean 'slurm-api-scheme'?)"));
    assert!(err("slurm-api-cafile = /x").contains("(did you mean 'slurm-api-ca-file'?)"));
    assert!(err("extra-slurm-api-scheme = https").contains("cannot take the 'extra-' prefix"));
}

#[test]
fn ca_file_with_https_is_read_and_checked() {
    let c = ok(&format!(
        "{}slurm-api-scheme = https\nslurm-api-ca-file = {}\n",
        slurm_ok(),
        test_ca()
    ));
    assert_eq!(c.slurm_api_ca_file, Some(PathBuf::from(test_ca())));
    c.validate().unwrap();
    // Empty unsets it again (a later file may undo an earlier one).
    let c = ok(&format!(
        "{}slurm-api-scheme = https\nslurm-api-ca-file = {}\nslurm-api-ca-file =\n",
        slurm_ok(),
        test_ca()
    ));
    assert_eq!(c.slurm_api_ca_file, None);
    let e = err("slurm-api-ca-file = ca.pem");
    assert!(
        e.contains("'slurm-api-ca-file'") && e.contains("absolute path"),
        "{e}"
    );
}

#[test]
fn unusable_ca_files_are_errors_naming_file_and_setting() {
    let s = Scratch::new();
    let empty = s.write("empty.pem", "");
    let junk = s.write("junk.pem", "hello\n");
    let key_only = s.write(
        "key.pem",
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    );
    let broken = s.write(
        "broken.pem",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    );
    let unreadable = s.write("unreadable.pem", "x");
    std::fs::set_permissions(&unreadable, std::fs::Permissions::from_mode(0o000)).unwrap();
    // root reads a 0000 file anyway; only expect the permission error when it really is one
    let root = std::fs::read(&unreadable).is_ok();
    let missing = s.0.join("missing.pem");
    let mut cases = vec![
        (missing, "the file does not exist"),
        (empty, "holds no certificate"),
        (junk, "holds no certificate"),
        (key_only, "holds no certificate"),
        (broken, "certificate 1 is not a usable X.509 CA certificate"),
    ];
    if !root {
        cases.push((unreadable, "cannot be read"));
    }
    for (path, want) in cases {
        let conf = s.write(
            "nsh.conf",
            &format!(
                "{}slurm-api-scheme = https\nslurm-api-ca-file = {}\n",
                slurm_ok(),
                path.display()
            ),
        );
        let e = load_from(&[file(&conf)])
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        let at = format!(
            "nsh.conf: {}:4: slurm-api-ca-file = {}: ",
            conf.display(),
            path.display()
        );
        assert!(e.starts_with(&at), "{e}");
        assert!(e.contains(want), "{want:?}: {e}");
        assert!(e.contains("PEM file holding the CA certificate"), "{e}");
    }
}

#[test]
fn ca_file_with_plain_http_is_an_error() {
    let e = ok(&format!(
        "{}slurm-api-ca-file = {}\n",
        slurm_ok(),
        test_ca()
    ))
    .validate()
    .unwrap_err()
    .to_string();
    assert!(
        // A text source is named without line numbers (parse_str's origin).
        e.starts_with("nsh.conf: /etc/nix/nsh.conf: slurm-api-ca-file is set but slurm-api-scheme is http (the default)"),
        "{e}"
    );
    assert!(e.contains("set slurm-api-scheme = https"), "{e}");
    let e = ok(&format!(
        "{}slurm-api-ca-file = {}\nslurm-api-scheme = http\n",
        slurm_ok(),
        test_ca()
    ))
    .validate()
    .unwrap_err()
    .to_string();
    assert!(e.contains("(set at /etc/nix/nsh.conf)"), "{e}");
}

#[test]
fn loopback_hosts() {
    for host in [
        "localhost",
        "LOCALHOST",
        "localhost.",
        "127.0.0.1",
        "127.1.2.3",
        "::1",
        "[::1]",
        "::ffff:127.0.0.1",
    ] {
        assert!(is_loopback_host(host), "{host}");
    }
    for host in [
        "10.97.0.1",
        "128.0.0.1",
        "126.255.255.255",
        "::2",
        "0.0.0.0",
        "slurm-head",
        "localhost.example.org",
        "mylocalhost",
        "127.0.0.1.example.org",
        "::ffff:10.0.0.1",
        "",
    ] {
        assert!(!is_loopback_host(host), "{host}");
    }
}

#[test]
fn token_crosses_plain_http_only_off_loopback_without_tls() {
    let crosses = |extra: &str| ok(&format!("{}{extra}", slurm_ok())).token_crosses_plain_http();
    assert!(!crosses(""), "the default host is localhost");
    assert!(!crosses("slurm-api-host = 127.0.0.1\n"));
    assert!(crosses("slurm-api-host = 10.97.0.1\n"));
    assert!(crosses("slurm-api-host = slurm-head.example.org\n"));
    assert!(!crosses(
        "slurm-api-host = 10.97.0.1\nslurm-api-scheme = https\n"
    ));
}
