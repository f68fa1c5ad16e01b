//! TLS to slurmrestd: slurm-api-scheme, slurm-api-ca-file.
use super::*;

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
