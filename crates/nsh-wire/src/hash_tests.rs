//! Hash parsing and printing in every algorithm and encoding, and the fixed-output check.
//! The nix32 and NAR-hash vectors were printed by Nix 2.34 (`nix-hash --to-base32`,
//! `nix-hash --type … FILE`) for the three bytes `abc`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use super::*;
use crate::fixed_output::{FixedOutputHash, FodError, Method};
use crate::nar::{self, ContentHash, RootKind, UnpackLimits};

/// (algo, base16, nix32, base64) of the bytes `abc`.
const ABC: [(HashAlgo, &str, &str, &str); 4] = [
    (
        HashAlgo::Md5,
        "900150983cd24fb0d6963f7d28e17f72",
        "3jgzhjhz9zjvbb0kyj7jc500ch",
        "kAFQmDzST7DWlj99KOF/cg==",
    ),
    (
        HashAlgo::Sha1,
        "a9993e364706816aba3e25717850c26c9cd0d89d",
        "kpcd173cq987hw957sx6m0868wv3x6d9",
        "qZk+NkcGgWq6PiVxeFDCbJzQ2J0=",
    ),
    (
        HashAlgo::Sha256,
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        "1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s",
        "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=",
    ),
    (
        HashAlgo::Sha512,
        "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
         2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
        "2gs8k559z4rlahfx0y688s49m2vvszylcikrfinm30ly9rak69236nkam5ydvly1ai7xac99vxfc4ii84hawjbk876blyk1jfhkbbyx",
        "3a81oZNherrMQXNJriBBMRLm+k6JqX6iCp7u5ktV05ohkpkqJ0/BqDa6PCOj/uu9RU1EI2Q86A4qmslPpUyknw==",
    ),
];

#[test]
fn every_algo_hashes_like_nix() {
    for (algo, b16, _, _) in ABC {
        assert_eq!(
            hash_bytes(algo, b"abc").encode(HashFormat::Base16),
            b16,
            "{algo}"
        );
    }
    assert_eq!(
        hash_bytes(HashAlgo::Blake3, b"abc").encode(HashFormat::Base16),
        "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
    );
}

#[test]
fn every_encoding_parses_and_prints() {
    for (algo, b16, n32, b64) in ABC {
        let want = hash_bytes(algo, b"abc");
        let sri = format!("{algo}-{b64}");
        for (text, format) in [
            (format!("{algo}:{b16}"), HashFormat::Base16),
            (format!("{algo}:{}", b16.to_uppercase()), HashFormat::Base16),
            (format!("{algo}:{n32}"), HashFormat::Nix32),
            (format!("{algo}:{b64}"), HashFormat::Base64),
            (sri.clone(), HashFormat::Sri),
        ] {
            assert_eq!(
                Hash::parse_with_format(&text, None).unwrap(),
                (want.clone(), format),
                "{text}"
            );
            // The algorithm known from context: it must agree with a prefix.
            assert_eq!(Hash::parse(&text, Some(algo)).unwrap(), want);
        }
        for bare in [b16, n32, b64] {
            assert_eq!(Hash::parse(bare, Some(algo)).unwrap(), want, "{bare}");
            assert_eq!(Hash::parse_unprefixed(bare, algo).unwrap(), want, "{bare}");
        }
        assert_eq!(want.encode(HashFormat::Base16), b16);
        assert_eq!(want.encode(HashFormat::Nix32), n32);
        assert_eq!(want.encode(HashFormat::Base64), b64);
        assert_eq!(want.to_sri(), sri);
        assert_eq!(want.to_prefixed(HashFormat::Nix32), format!("{algo}:{n32}"));
        assert_eq!(format!("{want}"), sri);
    }
}

#[test]
fn bad_hashes_are_refused() {
    let (_, b16, n32, _) = ABC[2];
    assert!(matches!(
        Hash::parse(&format!("sha3:{b16}"), None),
        Err(HashError::UnknownAlgo(_))
    ));
    assert!(matches!(
        Hash::parse(b16, None),
        Err(HashError::NoAlgo { .. })
    ));
    assert!(matches!(
        Hash::parse(&format!("sha256:{b16}"), Some(HashAlgo::Sha512)),
        Err(HashError::AlgoMismatch { .. })
    ));
    // One character short of base16, nix32 and base64 lengths.
    for s in [
        &b16[1..],
        &n32[1..],
        "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0",
    ] {
        assert!(matches!(
            Hash::parse_unprefixed(s, HashAlgo::Sha256),
            Err(HashError::BadLength { .. })
        ));
    }
    // Right lengths, wrong characters ('e' is not a nix32 digit).
    let bad16 = format!("zz{}", &b16[2..]);
    let bad32 = format!("e{}", &n32[1..]);
    let bad64 = format!("!{}", &ABC[2].3[1..]);
    for s in [bad16.as_str(), bad32.as_str(), bad64.as_str()] {
        assert!(matches!(
            Hash::parse_unprefixed(s, HashAlgo::Sha256),
            Err(HashError::BadEncoding { .. })
        ));
    }
    // SRI with a digest of another algorithm's size.
    assert!(matches!(
        Hash::parse(&format!("sha512-{}", ABC[2].3), None),
        Err(HashError::BadLength { .. })
    ));
    // Control characters never reach a message.
    let e = Hash::parse("sha256:\x1b[31m", None)
        .unwrap_err()
        .to_string();
    assert!(!e.contains('\x1b'), "{e}");
}

#[test]
fn drv_outputs_give_method_hash_and_ca() {
    let (_, b16, n32, _) = ABC[2];
    let flat = FixedOutputHash::from_drv_output("sha256", b16)
        .unwrap()
        .unwrap();
    assert_eq!(flat.method, Method::Flat);
    assert_eq!(flat.ca(), format!("fixed:sha256:{n32}"));
    let rec = FixedOutputHash::from_drv_output("r:sha1", ABC[1].1)
        .unwrap()
        .unwrap();
    assert_eq!(rec.method, Method::Recursive);
    assert_eq!(rec.ca(), format!("fixed:r:sha1:{}", ABC[1].2));
    // Nix writes base16, but reads any unprefixed form.
    let from32 = FixedOutputHash::from_drv_output("r:sha256", n32)
        .unwrap()
        .unwrap();
    assert_eq!(from32.hash, flat.hash);
    // Not fixed outputs.
    assert_eq!(FixedOutputHash::from_drv_output("", "").unwrap(), None);
    assert_eq!(
        FixedOutputHash::from_drv_output("r:sha256", "").unwrap(),
        None
    );
    assert_eq!(
        FixedOutputHash::from_drv_output("sha256", "impure").unwrap(),
        None
    );
    // Text and git hashing are refused, as are bad algorithms and digests.
    for algo in ["text:sha256", "git:sha1"] {
        assert!(matches!(
            FixedOutputHash::from_drv_output(algo, b16),
            Err(FodError::UnsupportedMethod(_))
        ));
    }
    assert!(FixedOutputHash::from_drv_output("r:crc32", b16).is_err());
    assert!(FixedOutputHash::from_drv_output("sha512", b16).is_err());
}

// --- the check while unpacking -------------------------------------------------------

fn tok(out: &mut Vec<u8>, t: &[u8]) {
    crate::framing::write_bytes(out, t).unwrap();
}

/// The NAR of one regular file.
fn file_nar(contents: &[u8], executable: bool) -> Vec<u8> {
    let mut v = Vec::new();
    for t in [nar::NAR_MAGIC, b"(", b"type", b"regular"] {
        tok(&mut v, t);
    }
    if executable {
        tok(&mut v, b"executable");
        tok(&mut v, b"");
    }
    for t in [b"contents".as_slice(), contents, b")"] {
        tok(&mut v, t);
    }
    v
}

/// The NAR of a directory holding `f` = `contents`.
fn dir_nar(contents: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    for t in [
        nar::NAR_MAGIC,
        b"(",
        b"type",
        b"directory",
        b"entry",
        b"(",
        b"name",
        b"f",
    ] {
        tok(&mut v, t);
    }
    tok(&mut v, b"node");
    // The file's node: its NAR without the magic (8 bytes of length, 16 of "nix-archive-1").
    v.extend_from_slice(&file_nar(contents, false)[24..]);
    tok(&mut v, b")");
    tok(&mut v, b")");
    v
}

fn check(nar_bytes: &[u8], want: &FixedOutputHash) -> Result<(), FodError> {
    let got = nar::parse_checked(
        &mut &nar_bytes[..],
        &UnpackLimits::default(),
        want.content_hash(),
    )
    .unwrap();
    want.verify(got.root, got.content.as_ref())
}

fn fod(method: Method, algo: HashAlgo, data: &[u8]) -> FixedOutputHash {
    FixedOutputHash {
        method,
        hash: hash_bytes(algo, data),
    }
}

#[test]
fn nar_of_abc_hashes_like_nix_hash() {
    let n = file_nar(b"abc", false);
    let rec = |algo| {
        nar::parse_checked(
            &mut &n[..],
            &UnpackLimits::default(),
            ContentHash::Nar(algo),
        )
        .unwrap()
        .content
        .unwrap()
    };
    assert_eq!(
        rec(HashAlgo::Sha1).encode(HashFormat::Base16),
        "1324fc4d1c8b0eb1e368844e71058a377b961318"
    );
    assert_eq!(
        rec(HashAlgo::Md5).encode(HashFormat::Nix32),
        "1zbsq50iwk0hwfi1w5z1b1r35a"
    );
    assert_eq!(
        rec(HashAlgo::Sha512).to_sri(),
        "sha512-0FRTfPcPJbwFzmOYO0jwKgzt4e0kxRK/u2VgdllEfHWL2YZVX0016wxqnT074WbAFSOjm0SlBN9FCEWzFim7sA=="
    );
    // sha256 reuses the NAR hash itself.
    let s = nar::parse_checked(
        &mut &n[..],
        &UnpackLimits::default(),
        ContentHash::Nar(HashAlgo::Sha256),
    )
    .unwrap();
    assert_eq!(s.content.unwrap().bytes(), &s.nar.sha256);
}

#[test]
fn flat_and_recursive_checks() {
    for algo in HashAlgo::ALL {
        // Flat: the file's contents.
        assert_eq!(
            check(&file_nar(b"abc", false), &fod(Method::Flat, algo, b"abc")),
            Ok(())
        );
        let e = check(&file_nar(b"abd", false), &fod(Method::Flat, algo, b"abc")).unwrap_err();
        let FodError::Mismatch { specified, got } = &e else {
            panic!("{e:?}")
        };
        assert_eq!(specified, &hash_bytes(algo, b"abc").to_sri());
        assert_eq!(got, &hash_bytes(algo, b"abd").to_sri());
        // Recursive: the NAR.
        let d = dir_nar(b"abc");
        assert_eq!(check(&d, &fod(Method::Recursive, algo, &d)), Ok(()));
        let other = dir_nar(b"abd");
        assert!(matches!(
            check(&other, &fod(Method::Recursive, algo, &d)),
            Err(FodError::Mismatch { .. })
        ));
        // The file's contents are not its NAR.
        assert!(
            check(
                &file_nar(b"abc", false),
                &fod(Method::Recursive, algo, b"abc")
            )
            .is_err()
        );
    }
    // Flat needs one non-executable regular file, whatever its hash.
    let abc = fod(Method::Flat, HashAlgo::Sha256, b"abc");
    assert_eq!(
        check(&file_nar(b"abc", true), &abc),
        Err(FodError::NotAFlatFile("an executable file"))
    );
    assert_eq!(
        check(&dir_nar(b"abc"), &abc),
        Err(FodError::NotAFlatFile("a directory"))
    );
    assert_eq!(
        abc.verify(RootKind::Symlink, None),
        Err(FodError::NotAFlatFile("a symlink"))
    );
    assert!(
        abc.verify(RootKind::Regular { executable: false }, None)
            .is_err()
    );
}

#[test]
fn unpack_checked_writes_and_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("out");
    let d = dir_nar(b"abc");
    let got = nar::unpack_checked(
        &mut &d[..],
        &dest,
        &UnpackLimits::default(),
        ContentHash::Nar(HashAlgo::Sha512),
    )
    .unwrap();
    assert_eq!(got.root, RootKind::Directory);
    assert_eq!(got.content, Some(hash_bytes(HashAlgo::Sha512, &d)));
    assert_eq!(std::fs::read(dest.join("f")).unwrap(), b"abc");
    let flat = dir.path().join("flat");
    let f = file_nar(b"abc", false);
    let got = nar::unpack_checked(
        &mut &f[..],
        &flat,
        &UnpackLimits::default(),
        ContentHash::FlatFile(HashAlgo::Md5),
    )
    .unwrap();
    assert_eq!(got.root, RootKind::Regular { executable: false });
    assert_eq!(got.content, Some(hash_bytes(HashAlgo::Md5, b"abc")));
}
