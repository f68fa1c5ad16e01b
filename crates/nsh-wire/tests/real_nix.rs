//! Golden tests against bytes produced by a real Nix (see `fixtures/regen.sh`;
//! the version is in `fixtures/nix-version`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nsh_wire::derivation::Derivation;
use nsh_wire::export::{read_export, read_export_with, write_export_end, write_export_entry};
use nsh_wire::nar;
use nsh_wire::store_path::StorePath;
use serde_json::Value;

const STORE: &str = "/nix/store";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn read(name: &str) -> Vec<u8> {
    fs::read(fixture(name)).unwrap()
}

// --- NAR ------------------------------------------------------------------------

#[test]
fn nar_fixture_parses_with_nix_hash() {
    let bytes = read("tree.nar");
    let expected = fs::read_to_string(fixture("tree.nar.sha256")).unwrap();
    let s = nar::parse(&mut bytes.as_slice()).unwrap();
    assert_eq!(s.sha256_hex(), expected.trim());
    assert_eq!(s.size, bytes.len() as u64);
}

#[test]
fn nar_fixture_unpacks_and_dumps_identically() {
    let bytes = read("tree.nar");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let s = nar::unpack(&mut bytes.as_slice(), &out).unwrap();
    assert_eq!(s.size, bytes.len() as u64);

    let mut again = Vec::new();
    nar::dump(&out, &mut again).unwrap();
    assert_eq!(
        again, bytes,
        "dump(unpack(nar)) differs from nix-store --dump"
    );

    // Spot checks of what Nix put in there.
    let mode = |p: &Path| fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&out.join("a")), 0o555);
    assert_eq!(mode(&out.join("C")), 0o444);
    assert_eq!(mode(&out.join("emptydir")), 0o555);
    assert_eq!(fs::read_link(out.join("l")).unwrap(), Path::new("a"));
    assert_eq!(fs::read(out.join("sub/deeper/z")).unwrap(), b"z\n");
    let names: Vec<Vec<u8>> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().as_bytes().to_vec())
        .collect();
    assert!(
        names.contains(&b"n\xffutf8".to_vec()),
        "non-UTF-8 name missing"
    );
    assert!(names.contains(&b"sp ace\tq".to_vec()));
}

#[test]
fn nar_fixture_every_truncation_is_refused() {
    let bytes = read("tree.nar");
    for cut in (0..bytes.len()).step_by(7) {
        assert!(nar::parse(&mut &bytes[..cut]).is_err(), "cut at {cut}");
    }
}

#[test]
fn nar_fixture_single_bit_flips_never_panic() {
    // Flipping bits inside token framing must be refused or (inside file data) only
    // change the hash; never panic and never leave output behind.
    let bytes = read("tree.nar");
    let orig = nar::parse(&mut bytes.as_slice()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    for i in (0..bytes.len()).step_by(3) {
        let mut b = bytes.clone();
        b[i] ^= 0x41;
        let out = tmp.path().join(format!("o{i}"));
        match nar::unpack(&mut b.as_slice(), &out) {
            Ok(s) => {
                assert_ne!(s.sha256, orig.sha256);
                fs::set_permissions(&out, fs::Permissions::from_mode(0o755)).ok();
            }
            Err(_) => assert!(fs::symlink_metadata(&out).is_err(), "left {out:?}"),
        }
    }
}

// --- export ---------------------------------------------------------------------

struct Expected {
    path: String,
    nix32: String,
    hex: String,
    size: u64,
    deriver: String,
    references: Vec<String>,
}

fn expected_export() -> Vec<Expected> {
    fs::read_to_string(fixture("two.export.paths"))
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            Expected {
                path: f[0].into(),
                nix32: f[1].strip_prefix("sha256:").unwrap().into(),
                hex: f[2].into(),
                size: f[3].parse().unwrap(),
                deriver: f[4].into(),
                references: f[5].split_whitespace().map(str::to_owned).collect(),
            }
        })
        .collect()
}

#[test]
fn export_fixture_matches_nix_metadata() {
    let bytes = read("two.export");
    let entries = read_export(&mut bytes.as_slice()).unwrap();
    let expected = expected_export();
    assert_eq!(entries.len(), 2);
    for (e, x) in entries.iter().zip(&expected) {
        assert_eq!(e.path, x.path);
        assert_eq!(e.nar.sha256_hex(), x.hex);
        let from_nix32 = nsh_wire::nixbase32::decode(&x.nix32).unwrap();
        assert_eq!(
            hex::encode(from_nix32),
            x.hex,
            "nix32 vs hex for {}",
            x.path
        );
        assert_eq!(e.nar.size, x.size);
        assert_eq!(e.deriver.as_deref(), Some(x.deriver.as_str()));
        assert_eq!(e.references, x.references);
        e.validate(STORE).unwrap();
    }
    // Dependencies first: the second path refers to the first.
    assert_eq!(entries[1].references, [entries[0].path.clone()]);
}

/// Copies everything read through it, to capture each NAR's bytes.
struct Tee<'a, R: ?Sized> {
    inner: &'a mut R,
    copy: Vec<u8>,
}

impl<R: Read + ?Sized> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.copy.extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

#[test]
fn export_fixture_is_reproduced_byte_for_byte() {
    let bytes = read("two.export");
    let mut nars = Vec::new();
    let entries = read_export_with(&mut bytes.as_slice(), |r| {
        let mut tee = Tee {
            inner: r,
            copy: Vec::new(),
        };
        let s = nar::parse(&mut tee)?;
        nars.push(tee.copy);
        Ok(s)
    })
    .unwrap();
    let mut out = Vec::new();
    for (e, n) in entries.iter().zip(&nars) {
        write_export_entry(&mut out, n, &e.path, &e.references, e.deriver.as_deref()).unwrap();
    }
    write_export_end(&mut out).unwrap();
    assert_eq!(out, bytes);
}

#[test]
fn export_fixture_unpacks_into_store_layout() {
    let bytes = read("two.export");
    let tmp = tempfile::tempdir().unwrap();
    let mut n = 0;
    let entries = read_export_with(&mut bytes.as_slice(), |r| {
        n += 1;
        nar::unpack(r, &tmp.path().join(format!("p{n}")))
    })
    .unwrap();
    assert_eq!(fs::read(tmp.path().join("p1")).unwrap(), b"hello\n");
    assert_eq!(
        fs::read_to_string(tmp.path().join("p2")).unwrap().trim(),
        entries[0].path
    );
}

// --- .drv -------------------------------------------------------------------------

const DRVS: &[&str] = &[
    "simple",
    "ref",
    "multi",
    "fod",
    "structured",
    "jsonenv",
    "ca",
];

fn json_twin(name: &str) -> Value {
    let v: Value = serde_json::from_slice(&read(&format!("{name}.drv.json"))).unwrap();
    let drvs = v["derivations"].as_object().unwrap();
    assert_eq!(drvs.len(), 1);
    drvs.values().next().unwrap().clone()
}

fn abs(base: &str) -> String {
    format!("{STORE}/{base}")
}

#[test]
fn drv_fixtures_match_nix_json_and_reprint_identically() {
    for name in DRVS {
        let text = read(&format!("{name}.drv"));
        let d = Derivation::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(d.to_aterm().as_bytes(), text.as_slice(), "{name}: reprint");

        let j = json_twin(name);
        assert_eq!(d.system, j["system"], "{name}");
        assert_eq!(d.builder, j["builder"], "{name}");
        assert_eq!(serde_json::to_value(&d.args).unwrap(), j["args"], "{name}");

        let mut env = d.env.clone();
        if let Some(sa) = j.get("structuredAttrs") {
            assert_eq!(&d.structured_attrs().unwrap().unwrap(), sa, "{name}");
            env.remove("__json");
        }
        let jenv: BTreeMap<String, String> = serde_json::from_value(j["env"].clone()).unwrap();
        assert_eq!(env, jenv, "{name}: env");

        let jout = j["outputs"].as_object().unwrap();
        assert_eq!(d.outputs.len(), jout.len(), "{name}");
        for (o, jo) in jout {
            let ours = &d.outputs[o];
            match jo.get("path") {
                Some(p) => assert_eq!(ours.path, abs(p.as_str().unwrap()), "{name}.{o}"),
                None => assert!(d.is_fixed_output() || d.is_floating_ca(), "{name}.{o}"),
            }
        }

        let jdrvs = j["inputs"]["drvs"].as_object().unwrap();
        let want: BTreeMap<String, Vec<String>> = jdrvs
            .iter()
            .map(|(k, v)| {
                (
                    abs(k),
                    serde_json::from_value(v["outputs"].clone()).unwrap(),
                )
            })
            .collect();
        assert_eq!(d.input_drvs, want, "{name}: inputDrvs");
        let srcs: Vec<String> = j["inputs"]["srcs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| abs(s.as_str().unwrap()))
            .collect();
        assert_eq!(d.input_srcs, srcs, "{name}: inputSrcs");

        for p in d.input_drvs.keys().chain(&d.input_srcs) {
            StorePath::parse(p, STORE).unwrap();
        }
    }
}

#[test]
fn drv_multi_output() {
    let d = Derivation::parse(&read("multi.drv")).unwrap();
    assert_eq!(d.outputs.keys().collect::<Vec<_>>(), ["dev", "out"]);
    assert_eq!(d.env["outputs"], "out dev");
    assert!(d.outputs["dev"].path.ends_with("-multi-dev"));
    assert!(!d.is_floating_ca() && !d.is_fixed_output());
}

#[test]
fn drv_fixed_output() {
    let d = Derivation::parse(&read("fod.drv")).unwrap();
    let o = &d.outputs["out"];
    assert_eq!(o.hash_algo, "r:sha256");
    assert_eq!(
        o.hash,
        "2ca0b8ce996f865db37619bfe91023559305aad8158042fc6ddb0ef1d43c5b67"
    );
    assert!(d.is_fixed_output());
    assert!(!d.is_floating_ca());
}

#[test]
fn drv_floating_ca() {
    let d = Derivation::parse(&read("ca.drv")).unwrap();
    assert!(d.is_floating_ca());
    assert_eq!(d.outputs["out"].path, "");
}

#[test]
fn drv_structured_attrs() {
    let d = Derivation::parse(&read("structured.drv")).unwrap();
    assert_eq!(
        d.attr_json("extraSlurmParams").unwrap().unwrap(),
        serde_json::json!({"constraint": "a\"b\\c", "cpus-per-task": 2, "mem": "1G"})
    );
    // A string attribute under __json is itself parsed as JSON.
    assert_eq!(
        d.attr_json("pbsResources").unwrap().unwrap(),
        serde_json::json!({"select": "1:ncpus=2"})
    );
    assert_eq!(d.attr_json("slurmNativeConstraints").unwrap(), None);
    assert_eq!(d.required_system_features(), ["nsh", "big-parallel"]);
    // "msg" is a plain string, not JSON: the error names the attribute.
    let e = d.attr_json("msg").unwrap_err().to_string();
    assert!(e.contains("'msg'"), "{e}");
}

#[test]
fn drv_json_in_plain_env_with_awkward_strings() {
    let d = Derivation::parse(&read("jsonenv.drv")).unwrap();
    assert!(d.structured_attrs().is_none());
    assert_eq!(
        d.attr_json("extraSlurmParams").unwrap().unwrap(),
        serde_json::json!({
            "a": "x\"y", "b": [1, 2], "bs": "back\\slash",
            "nl": "line1\nline2", "tab": "t\tt", "uni": "é€"
        })
    );
    assert_eq!(
        d.attr_json("slurmNativeConstraints").unwrap().unwrap(),
        serde_json::json!(["--gres=gpu:1"])
    );
    assert_eq!(d.env["plain"], "raw\ttab\rcr\\ \"q\"");
    assert_eq!(d.required_system_features(), ["nsh", "kvm"]);
    assert!(
        d.attr_json("plain")
            .unwrap_err()
            .to_string()
            .contains("'plain'")
    );
}

#[test]
fn drv_truncations_are_refused() {
    for name in DRVS {
        let text = read(&format!("{name}.drv"));
        for cut in 0..text.len() {
            assert!(Derivation::parse(&text[..cut]).is_err(), "{name} cut {cut}");
        }
    }
}

#[test]
fn nix_2_8_fixtures_parse_and_reprint() {
    // Same expressions through Nix 2.8.0 (bookworm); no export (see regen.sh).
    let bytes = read("nix-2.8/tree.nar");
    let expected = fs::read_to_string(fixture("nix-2.8/tree.nar.sha256")).unwrap();
    assert_eq!(
        nar::parse(&mut bytes.as_slice()).unwrap().sha256_hex(),
        expected.trim()
    );
    for name in DRVS {
        let text = read(&format!("nix-2.8/{name}.drv"));
        let d = Derivation::parse(&text).unwrap_or_else(|e| panic!("2.8 {name}: {e}"));
        assert_eq!(d.to_aterm().as_bytes(), text.as_slice(), "2.8 {name}");
        // Nix 2.8's show-derivation JSON: env is a flat object here too.
        let j: Value = serde_json::from_slice(&read(&format!("nix-2.8/{name}.drv.json"))).unwrap();
        let jd = j.as_object().unwrap().values().next().unwrap();
        let jenv: BTreeMap<String, String> = serde_json::from_value(jd["env"].clone()).unwrap();
        assert_eq!(d.env, jenv, "2.8 {name}: env");
    }
}
