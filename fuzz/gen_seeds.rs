//! Writes seed corpora: `corpus/nar_read` (the fixture NARs, NARs of small trees made
//! here, and hostile variants) and `corpus/agent_frame` (one encoded frame of every
//! message, and a stream of several), `corpus/worker_reply` (nix-daemon answers). Run from
//! `fuzz/`: `cargo run --bin gen_seeds`.

use std::fs;
use std::path::Path;

use nsh_wire::agent_protocol::{
    AgentMsg, BuildRequest, BuildResult, ClientMsg, PROTOCOL_VERSION, PathInfo,
};
use nsh_wire::codec::encode_frame;
use nsh_wire::framing::{write_bytes, write_u64};
use nsh_wire::nar;
use nsh_wire::worker_protocol::{
    STDERR_ERROR, STDERR_LAST, STDERR_NEXT, STDERR_START_ACTIVITY, WORKER_MAGIC_2,
};

fn put(dir: &Path, name: &str, data: &[u8]) {
    fs::write(dir.join(name), data).expect("write seed");
}

fn toks(out: &mut Vec<u8>, ts: &[&[u8]]) {
    for t in ts {
        write_bytes(out, t).expect("write");
    }
}

fn main() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let nar_dir = here.join("corpus/nar_read");
    let frame_dir = here.join("corpus/agent_frame");
    fs::create_dir_all(&nar_dir).expect("mkdir");
    fs::create_dir_all(&frame_dir).expect("mkdir");

    // Real NARs (written by nix-store --dump).
    let fixtures = here.join("../crates/nsh-wire/tests/fixtures");
    put(
        &nar_dir,
        "fixture-tree.nar",
        &fs::read(fixtures.join("tree.nar")).expect("tree.nar"),
    );

    // Small trees made here.
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    fs::write(t.join("file"), b"hello\n").expect("w");
    let mut v = Vec::new();
    nar::dump(&t.join("file"), &mut v).expect("dump");
    put(&nar_dir, "file.nar", &v);
    std::os::unix::fs::symlink("/etc/passwd", t.join("link")).expect("ln");
    v.clear();
    nar::dump(&t.join("link"), &mut v).expect("dump");
    put(&nar_dir, "symlink.nar", &v);
    let d = t.join("d");
    fs::create_dir_all(d.join("sub/deeper")).expect("mkdir");
    fs::write(d.join("a"), b"#!/bin/sh\n").expect("w");
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(d.join("a"), fs::Permissions::from_mode(0o755)).expect("chmod");
    fs::write(d.join("sub/deeper/z"), b"z").expect("w");
    std::os::unix::fs::symlink("sub", d.join("s")).expect("ln");
    v.clear();
    nar::dump(&d, &mut v).expect("dump");
    put(&nar_dir, "dir.nar", &v);

    // Hostile: a symlink then a directory of the same name through it.
    let mut h = Vec::new();
    toks(&mut h, &[b"nix-archive-1", b"(", b"type", b"directory"]);
    toks(&mut h, &[b"entry", b"(", b"name", b"x", b"node"]);
    toks(
        &mut h,
        &[b"(", b"type", b"symlink", b"target", b"/etc", b")", b")"],
    );
    toks(&mut h, &[b"entry", b"(", b"name", b"x", b"node"]);
    toks(
        &mut h,
        &[
            b"(",
            b"type",
            b"directory",
            b"entry",
            b"(",
            b"name",
            b"f",
            b"node",
        ],
    );
    toks(
        &mut h,
        &[
            b"(",
            b"type",
            b"regular",
            b"contents",
            b"pwned",
            b")",
            b")",
            b")",
        ],
    );
    toks(&mut h, &[b")", b")"]);
    put(&nar_dir, "hostile-symlink-dup.nar", &h);
    for (i, name) in [&b".."[..], b"a/b", b"a\0b", b"."].iter().enumerate() {
        let mut h = Vec::new();
        toks(&mut h, &[b"nix-archive-1", b"(", b"type", b"directory"]);
        toks(&mut h, &[b"entry", b"(", b"name", name, b"node"]);
        toks(
            &mut h,
            &[
                b"(",
                b"type",
                b"regular",
                b"contents",
                b"x",
                b")",
                b")",
                b")",
            ],
        );
        put(&nar_dir, &format!("hostile-name-{i}.nar"), &h);
    }

    // Agent protocol frames.
    let info = PathInfo {
        path: "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-x".into(),
        nar_hash: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".into(),
        nar_size: 1234,
        references: vec!["/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-y".into()],
        deriver: Some("/nix/store/cccccccccccccccccccccccccccccccc-x.drv".into()),
    };
    let agent = [
        AgentMsg::Hello {
            version: PROTOCOL_VERSION,
            hostname: "node1".into(),
            nix_version: "nix-store (Nix) 2.34.8".into(),
            store: "auto".into(),
        },
        AgentMsg::Missing {
            paths: vec![info.path.clone(), "/nix/store/x".into()],
        },
        AgentMsg::Imported { paths: 300 },
        AgentMsg::Log(b"building\n".to_vec()),
        AgentMsg::LogGap { bytes: 1 << 20 },
        AgentMsg::BuildDone(BuildResult {
            status: 100,
            message: "failed".into(),
            outputs: vec![info.path.clone()],
            kept_dir: Some("/tmp/nix-build-x.drv-0".into()),
        }),
        AgentMsg::Output(info.clone()),
        AgentMsg::NarChunk(vec![0x28, 0xb5, 0x2f, 0xfd, 1, 2, 3]),
        AgentMsg::NarEnd,
        AgentMsg::Error {
            message: "boom".into(),
        },
        AgentMsg::Pong,
        AgentMsg::Bye { timings: vec![] },
    ];
    let client = [
        ClientMsg::Hello {
            version: PROTOCOL_VERSION,
            token: "0123456789abcdef".into(),
        },
        ClientMsg::QueryMissing {
            paths: vec![info.path.clone()],
        },
        ClientMsg::ImportPath(info.clone()),
        ClientMsg::ImportChunk(vec![1, 2, 3, 4]),
        ClientMsg::ImportEnd,
        ClientMsg::Build(BuildRequest {
            drv_path: "/nix/store/cccccccccccccccccccccccccccccccc-x.drv".into(),
            outputs: vec!["out".into(), "dev".into()],
            options: vec![("max-silent-time".into(), "60".into())],
            cores: Some(2),
            keep_failed: true,
            log_offset: 4096,
        }),
        ClientMsg::FetchOutput {
            path: info.path.clone(),
        },
        ClientMsg::Goodbye {
            collect_garbage: true,
        },
        ClientMsg::Ping,
    ];
    let mut all_agent = Vec::new();
    for (i, m) in agent.iter().enumerate() {
        let f = encode_frame(m).expect("encode");
        put(&frame_dir, &format!("agent-{i}.frame"), &f);
        put(&frame_dir, &format!("agent-{i}.body"), &f[4..]);
        all_agent.extend_from_slice(&f);
    }
    put(&frame_dir, "agent-stream", &all_agent);
    let mut all_client = Vec::new();
    for (i, m) in client.iter().enumerate() {
        let f = encode_frame(m).expect("encode");
        put(&frame_dir, &format!("client-{i}.frame"), &f);
        put(&frame_dir, &format!("client-{i}.body"), &f[4..]);
        all_client.extend_from_slice(&f);
    }
    put(&frame_dir, "client-stream", &all_client);

    // What nix-daemon --stdio answers: a handshake reply (Nix 2.8 and 2.34 shapes), then
    // log lines, an activity, a structured error.
    let worker_dir = here.join("corpus/worker_reply");
    fs::create_dir_all(&worker_dir).expect("mkdir");
    let u = |out: &mut Vec<u8>, n: u64| write_u64(out, n).expect("write");
    for (name, version, trusted) in [("hello-2.8", 0x122u64, false), ("hello-2.34", 0x127, true)] {
        let mut s = Vec::new();
        u(&mut s, WORKER_MAGIC_2);
        u(&mut s, version);
        write_bytes(&mut s, name.trim_start_matches("hello-").as_bytes()).expect("write");
        if trusted {
            u(&mut s, 1);
        }
        u(&mut s, STDERR_NEXT);
        write_bytes(&mut s, b"warning: a line").expect("write");
        u(&mut s, STDERR_LAST);
        u(&mut s, STDERR_START_ACTIVITY);
        for v in [1, 3, 100] {
            u(&mut s, v);
        }
        write_bytes(&mut s, b"copying").expect("write");
        u(&mut s, 2);
        u(&mut s, 0);
        u(&mut s, 7);
        u(&mut s, 1);
        write_bytes(&mut s, b"field").expect("write");
        u(&mut s, 0);
        u(&mut s, STDERR_ERROR);
        write_bytes(&mut s, b"Error").expect("write");
        u(&mut s, 0);
        write_bytes(&mut s, b"").expect("write");
        write_bytes(&mut s, b"hash mismatch").expect("write");
        u(&mut s, 0);
        u(&mut s, 1);
        u(&mut s, 0);
        write_bytes(&mut s, b"trace").expect("write");
        put(&worker_dir, name, &s);
    }
    println!("seeds written under {}", here.join("corpus").display());
}
