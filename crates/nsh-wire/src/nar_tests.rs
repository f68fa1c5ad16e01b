//! Round trips and the hostile-input corpus for the NAR decoder.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use super::*;
use crate::framing::write_bytes;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};

// --- a tiny NAR builder -------------------------------------------------------

fn t(out: &mut Vec<u8>, tok: &[u8]) {
    write_bytes(out, tok).unwrap();
}

fn nar(node: Vec<u8>) -> Vec<u8> {
    let mut v = Vec::new();
    t(&mut v, NAR_MAGIC);
    v.extend(node);
    v
}

fn file(contents: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    for x in [&b"("[..], b"type", b"regular", b"contents", contents, b")"] {
        t(&mut v, x);
    }
    v
}

fn exe(contents: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    for x in [
        &b"("[..],
        b"type",
        b"regular",
        b"executable",
        b"",
        b"contents",
        contents,
        b")",
    ] {
        t(&mut v, x);
    }
    v
}

fn link(target: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    for x in [&b"("[..], b"type", b"symlink", b"target", target, b")"] {
        t(&mut v, x);
    }
    v
}

fn dir(entries: &[(&[u8], Vec<u8>)]) -> Vec<u8> {
    let mut v = Vec::new();
    for x in [&b"("[..], b"type", b"directory"] {
        t(&mut v, x);
    }
    for (name, node) in entries {
        for x in [&b"entry"[..], b"(", b"name", name, b"node"] {
            t(&mut v, x);
        }
        v.extend_from_slice(node);
        t(&mut v, b")");
    }
    t(&mut v, b")");
    v
}

fn sha(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

/// Unpacks into a fresh tempdir/out; on error asserts nothing at all was left behind.
fn try_unpack(bytes: &[u8], limits: &UnpackLimits) -> Result<NarSummary, NarError> {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("out");
    let res = unpack_with_limits(&mut &bytes[..], &dest, limits);
    if res.is_err() {
        assert!(
            fs::symlink_metadata(&dest).is_err(),
            "partial output left behind: {res:?}"
        );
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);
    }
    res
}

// --- round trips -----------------------------------------------------------------

#[test]
fn dump_unpack_dump_roundtrip() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("C"), "C").unwrap();
    fs::write(src.join("_u"), "x").unwrap();
    fs::write(src.join("a"), "#!/bin/sh\n").unwrap();
    fs::set_permissions(src.join("a"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(src.join("empty"), "").unwrap();
    fs::create_dir(src.join("emptydir")).unwrap();
    fs::create_dir_all(src.join("sub/deeper")).unwrap();
    fs::write(src.join("sub/deeper/z"), vec![7u8; 100_000]).unwrap();
    symlink("a", src.join("l")).unwrap();
    symlink("/etc/passwd", src.join("abs")).unwrap();
    fs::write(src.join(OsStr::from_bytes(b"n\xffutf8")), "raw").unwrap();

    let mut a = Vec::new();
    dump(&src, &mut a).unwrap();
    let summary = parse(&mut a.as_slice()).unwrap();
    assert_eq!(summary.size, a.len() as u64);
    assert_eq!(summary.sha256, sha(&a));

    let out = tmp.path().join("out");
    let s2 = unpack(&mut a.as_slice(), &out).unwrap();
    assert_eq!(s2, summary);
    let mut b = Vec::new();
    dump(&out, &mut b).unwrap();
    assert_eq!(a, b);

    let mode = |p: &str| {
        fs::symlink_metadata(out.join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode("C"), 0o444);
    assert_eq!(mode("a"), 0o555);
    assert_eq!(mode("sub"), 0o555);
    assert_eq!(mode(""), 0o555);
    assert_eq!(
        fs::read_link(out.join("abs")).unwrap(),
        Path::new("/etc/passwd")
    );
    remove_tree(&out);
    assert!(!out.exists());
}

#[test]
fn single_file_and_symlink_roots() {
    for (node, check) in [
        (file(b"hello\n"), "file"),
        (exe(b""), "exe"),
        (link(b"/nonexistent/target"), "link"),
    ] {
        let bytes = nar(node);
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("out");
        let s = unpack(&mut bytes.as_slice(), &dest).unwrap();
        assert_eq!(s.sha256, sha(&bytes), "{check}");
        let mut again = Vec::new();
        dump(&dest, &mut again).unwrap();
        assert_eq!(again, bytes, "{check}");
    }
}

#[test]
fn trailing_bytes_are_not_consumed() {
    let mut bytes = nar(file(b"x"));
    let len = bytes.len();
    bytes.extend_from_slice(b"GARBAGE!");
    let mut r = bytes.as_slice();
    let s = parse(&mut r).unwrap();
    assert_eq!(s.size, len as u64);
    assert_eq!(r, b"GARBAGE!");
}

#[test]
fn symlink_to_outside_then_sibling_stays_inside() {
    // A symlink pointing outside, followed by a sibling: legal, and the sibling must
    // land inside dest, not through the symlink.
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().as_os_str().as_bytes().to_vec();
    let bytes = nar(dir(&[(b"a", link(&target)), (b"b", file(b"data"))]));
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("out");
    unpack(&mut bytes.as_slice(), &dest).unwrap();
    assert!(
        fs::symlink_metadata(dest.join("a"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(fs::read(dest.join("b")).unwrap(), b"data");
    assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
    remove_tree(&dest);
}

#[test]
fn dest_exists_is_refused_and_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("out");
    symlink("/etc", &dest).unwrap();
    let bytes = nar(file(b"x"));
    let err = unpack(&mut bytes.as_slice(), &dest).unwrap_err();
    assert!(matches!(err, NarError::DestExists { .. }), "{err}");
    assert!(
        fs::symlink_metadata(&dest)
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

// --- hostile corpus -----------------------------------------------------------

fn hostile_cases() -> Vec<(&'static str, Vec<u8>)> {
    let outside = b"/tmp/nsh-nar-test-outside-never-created".to_vec();
    let mut bad_magic = Vec::new();
    t(&mut bad_magic, b"nix-archive-2");
    bad_magic.extend(file(b"x"));

    let mut bad_padding = nar(file(b"abc"));
    // Layout: magic(24) "("(16) "type"(16) "regular"(16) "contents"(16) len(8) "abc"+pad.
    let pad_at = 24 + 16 * 4 + 8 + 3;
    bad_padding[pad_at] = 1;

    let mut bad_token_padding = nar(file(b""));
    bad_token_padding[24 + 9] = b'x'; // padding of "("

    let mut huge_len = Vec::new();
    t(&mut huge_len, NAR_MAGIC);
    for x in [&b"("[..], b"type", b"regular", b"contents"] {
        t(&mut huge_len, x);
    }
    huge_len.extend_from_slice(&u64::MAX.to_le_bytes());

    let mut huge_name = Vec::new();
    t(&mut huge_name, NAR_MAGIC);
    for x in [&b"("[..], b"type", b"directory", b"entry", b"(", b"name"] {
        t(&mut huge_name, x);
    }
    huge_name.extend_from_slice(&(1u64 << 40).to_le_bytes());

    let mut depth_bomb = file(b"bottom");
    for _ in 0..300 {
        depth_bomb = dir(&[(b"d", depth_bomb)]);
    }

    let mut wrong_type = Vec::new();
    for x in [&b"("[..], b"type", b"fifo", b")"] {
        t(&mut wrong_type, x);
    }
    let mut junk_in_dir = Vec::new();
    for x in [&b"("[..], b"type", b"directory", b"entrx", b")"] {
        t(&mut junk_in_dir, x);
    }
    let mut contents_first = Vec::new();
    for x in [
        &b"("[..],
        b"type",
        b"regular",
        b"contents",
        b"x",
        b"executable",
        b"",
        b")",
    ] {
        t(&mut contents_first, x);
    }
    let mut no_close = Vec::new();
    for x in [&b"("[..], b"type", b"regular", b"contents", b"x", b"("] {
        t(&mut no_close, x);
    }

    vec![
        ("bad magic", bad_magic),
        ("empty stream", Vec::new()),
        ("dotdot", nar(dir(&[(b"..", file(b"x"))]))),
        ("dot", nar(dir(&[(b".", file(b"x"))]))),
        ("slash", nar(dir(&[(b"a/b", file(b"x"))]))),
        ("leading slash", nar(dir(&[(b"/etc", file(b"x"))]))),
        ("nul", nar(dir(&[(b"a\0b", file(b"x"))]))),
        ("empty name", nar(dir(&[(b"", file(b"x"))]))),
        (
            "unsorted",
            nar(dir(&[(b"b", file(b"x")), (b"a", file(b"x"))])),
        ),
        (
            "unsorted by bytes",
            nar(dir(&[(b"a", file(b"x")), (b"C", file(b"x"))])),
        ),
        (
            "duplicate",
            nar(dir(&[(b"a", file(b"x")), (b"a", file(b"y"))])),
        ),
        (
            "symlink then same-name dir",
            nar(dir(&[
                (b"x", link(&outside)),
                (b"x", dir(&[(b"evil", file(b"pwned"))])),
            ])),
        ),
        (
            "symlink then path through it",
            nar(dir(&[(b"x", link(&outside)), (b"x/evil", file(b"pwned"))])),
        ),
        ("bad padding", bad_padding),
        ("bad token padding", bad_token_padding),
        ("executable with value", {
            let mut v = Vec::new();
            for x in [
                &b"("[..],
                b"type",
                b"regular",
                b"executable",
                b"yes",
                b"contents",
                b"x",
                b")",
            ] {
                t(&mut v, x);
            }
            nar(v)
        }),
        ("contents before executable", nar(contents_first)),
        ("huge contents length", huge_len),
        ("huge name length", huge_name),
        ("depth bomb", nar(depth_bomb)),
        ("unknown type", nar(wrong_type)),
        ("unknown token in dir", nar(junk_in_dir)),
        ("empty symlink target", nar(link(b""))),
        ("nul in symlink target", nar(link(b"a\0b"))),
        ("missing close", nar(no_close)),
    ]
}

#[test]
fn hostile_corpus_is_refused() {
    for (what, bytes) in hostile_cases() {
        let parsed = parse(&mut bytes.as_slice());
        assert!(parsed.is_err(), "parse accepted {what}");
        let err = try_unpack(&bytes, &UnpackLimits::default()).expect_err(what);
        // Messages must not be empty and must be printable.
        assert!(!err.to_string().is_empty(), "{what}");
    }
    assert!(!Path::new("/tmp/nsh-nar-test-outside-never-created").exists());
}

#[test]
fn error_names_the_offending_entry() {
    let bytes = nar(dir(&[(
        b"sub",
        dir(&[(b"ok", file(b"")), (b"..", file(b"x"))]),
    )]));
    let err = parse(&mut bytes.as_slice()).unwrap_err();
    assert!(err.to_string().contains("/sub/.."), "{err}");
    let bytes = nar(dir(&[(b"b", file(b"x")), (b"a", file(b"x"))]));
    let err = parse(&mut bytes.as_slice()).unwrap_err();
    assert!(
        matches!(&err, NarError::NotSorted { path, prev } if path == "/a" && prev == "b"),
        "{err}"
    );
}

#[test]
fn truncated_anywhere_is_refused() {
    let full = nar(dir(&[
        (b"a", exe(b"#!/bin/sh\n")),
        (b"b", link(b"a")),
        (b"c", dir(&[(b"z", file(b"0123456789"))])),
    ]));
    assert!(try_unpack(&full, &UnpackLimits::default()).is_ok());
    for cut in 0..full.len() {
        let r = try_unpack(&full[..cut], &UnpackLimits::default());
        assert!(r.is_err(), "accepted a NAR cut at {cut}");
    }
}

#[test]
fn limits_are_enforced() {
    let big = nar(file(&[0u8; 4096]));
    let tight = UnpackLimits {
        max_file_size: 1024,
        ..UnpackLimits::default()
    };
    assert!(matches!(
        try_unpack(&big, &tight),
        Err(NarError::FileTooLarge {
            size: 4096,
            max: 1024,
            ..
        })
    ));
    let total = UnpackLimits {
        max_total_size: 1000,
        ..UnpackLimits::default()
    };
    assert!(matches!(
        try_unpack(&big, &total),
        Err(NarError::TotalTooLarge { .. })
    ));
    let many = nar(dir(&[
        (b"a", file(b"")),
        (b"b", file(b"")),
        (b"c", file(b"")),
    ]));
    let few = UnpackLimits {
        max_entries: 3,
        ..UnpackLimits::default()
    };
    assert!(matches!(
        try_unpack(&many, &few),
        Err(NarError::TooManyEntries { max: 3, .. })
    ));
    let deep = nar(dir(&[(b"a", dir(&[(b"b", dir(&[]))]))]));
    let shallow = UnpackLimits {
        max_depth: 1,
        ..UnpackLimits::default()
    };
    assert!(matches!(
        try_unpack(&deep, &shallow),
        Err(NarError::TooDeep { max: 1, .. })
    ));
    let ok = UnpackLimits {
        max_depth: 2,
        ..UnpackLimits::default()
    };
    assert!(try_unpack(&deep, &ok).is_ok());
}

#[test]
fn hashing_reader_counts() {
    let data = b"some bytes".to_vec();
    let mut r = HashingReader::new(data.as_slice());
    let mut out = Vec::new();
    r.read_to_end(&mut out).unwrap();
    assert_eq!(r.bytes_read(), 10);
    assert_eq!(r.summary().sha256, sha(&data));
}

#[test]
fn error_messages_escape_control_characters() {
    let n = nar(dir(&[(b"a\0b\x1b[31m", file(b"x"))]));
    let msg = parse(&mut &n[..]).unwrap_err().to_string();
    assert!(msg.contains("a\\u{0}b\\u{1b}[31m"), "{msg}");
    assert!(!msg.chars().any(char::is_control), "{msg}");
}
