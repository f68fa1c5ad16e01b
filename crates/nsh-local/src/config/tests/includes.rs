//! `include`, `!include`, nesting, and errors that name the included file.
use super::*;

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
