//! The JWT never shows, and its file must be private.
use super::*;

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
