//! Tests of `build.rs`.
use super::*;

#[test]
fn classifies_internal_json() {
    assert_eq!(
        parse_stderr_line(
            r#"@nix {"action":"result","fields":["hello world"],"id":123,"type":101}"#
        ),
        StderrLine::Log("hello world".into())
    );
    assert_eq!(
        parse_stderr_line(r#"@nix {"action":"result","fields":["post"],"id":1,"type":107}"#),
        StderrLine::Log("post".into())
    );
    assert_eq!(
        parse_stderr_line(r#"@nix {"action":"msg","level":0,"msg":"error: builder failed"}"#),
        StderrLine::Msg {
            level: 0,
            text: "error: builder failed".into()
        }
    );
    assert_eq!(
        parse_stderr_line(
            r#"@nix {"action":"start","id":1,"level":3,"parent":0,"text":"building","type":105,"fields":[]}"#
        ),
        StderrLine::Ignore
    );
    assert_eq!(
        parse_stderr_line(r#"@nix {"action":"result","fields":["buildPhase"],"id":1,"type":104}"#),
        StderrLine::Ignore
    );
    assert_eq!(
        parse_stderr_line("warning: plain"),
        StderrLine::Log("warning: plain".into())
    );
    assert_eq!(
        parse_stderr_line("@nix {broken"),
        StderrLine::Log("@nix {broken".into())
    );
}

#[test]
fn builds_realise_args() {
    let req = BuildRequest {
        drv_path: "/nix/store/aaaa-x.drv".into(),
        outputs: vec!["out".into(), "dev".into()],
        options: vec![
            ("max-silent-time".into(), "60".into()),
            ("system-features".into(), "nsh kvm".into()),
        ],
        cores: None,
        keep_failed: false,
        log_offset: 0,
    };
    assert_eq!(
        realise_args(&req, Path::new("/d/result"), None, 2).unwrap(),
        [
            "--realise",
            "/nix/store/aaaa-x.drv!out,dev",
            "--add-root",
            "/d/result",
            "--log-format",
            "internal-json",
            "--option",
            "max-silent-time",
            "60",
            "--option",
            "system-features",
            "nsh kvm",
            "--option",
            "cores",
            "2",
        ]
    );
    let kept = BuildRequest {
        keep_failed: true,
        ..req.clone()
    };
    let args = realise_args(&kept, Path::new("/d/result"), None, 1).unwrap();
    assert_eq!(
        args[args.len() - 6..],
        ["--option", "cores", "1", "--option", "keep-failed", "true"]
    );
    let with_hook = realise_args(
        &req,
        Path::new("/d/result"),
        Some(Path::new("/opt/nix/libexec/nix/build-remote")),
        2,
    )
    .unwrap();
    assert_eq!(
        with_hook[with_hook.len() - 3..],
        [
            "--option",
            "build-hook",
            "/opt/nix/libexec/nix/build-remote"
        ]
    );
    let bad = BuildRequest {
        drv_path: "--gc".into(),
        ..req.clone()
    };
    assert!(realise_args(&bad, Path::new("/d/result"), None, 2).is_err());
    let bad = BuildRequest {
        outputs: vec!["a,b".into()],
        ..req.clone()
    };
    assert!(realise_args(&bad, Path::new("/d/result"), None, 2).is_err());
    let bad = BuildRequest {
        options: vec![("--x".into(), "1".into())],
        ..req
    };
    assert!(realise_args(&bad, Path::new("/d/result"), None, 2).is_err());
}

fn idle_build() -> Build {
    Build::idle("/nix/store/x.drv".into())
}

#[test]
fn backlog_keeps_the_tail_in_whole_lines() {
    let b = idle_build();
    let line = "x".repeat(1000);
    for _ in 0..2000 {
        b.push_log(&line);
    }
    b.attach(7, 0);
    let Next::Gap(gap) = b.next(7) else {
        panic!("expected a gap first")
    };
    let mut got = Vec::new();
    while let Next::Log(bytes) = b.next(7) {
        got.extend(bytes);
    }
    assert_eq!(gap + got.len() as u64, 2000 * 1001);
    let text = String::from_utf8(got).unwrap();
    assert!(text.len() <= MAX_BACKLOG);
    assert!(text.lines().all(|l| l == line));
    b.attach(8, 2000 * 1001);
    assert!(matches!(b.next(7), Next::Detached));
    b.finish(0, String::new(), vec!["/nix/store/out".into()]);
    assert!(matches!(b.next(8), Next::Done(r) if r.outputs.len() == 1));
}

#[test]
fn a_reconnecting_client_gets_the_log_from_its_offset() {
    let b = idle_build();
    for i in 0..10 {
        b.push_log(&format!("line {i}"));
    }
    b.attach(1, 0);
    let Next::Log(first) = b.next(1) else {
        panic!("expected log")
    };
    assert_eq!(first.len(), 70);
    // The client got only the first three lines before its connection broke.
    b.attach(2, 21);
    let Next::Log(rest) = b.next(2) else {
        panic!("expected log")
    };
    assert_eq!(
        String::from_utf8(rest).unwrap(),
        "line 3\nline 4\nline 5\nline 6\nline 7\nline 8\nline 9\n"
    );
    // An offset past the end (a confused client) is clamped: nothing is sent twice.
    b.attach(3, 1 << 40);
    b.finish(0, String::new(), vec![]);
    assert!(matches!(b.next(3), Next::Done(_)));
}
