//! The NAR decoder on arbitrary bytes: `parse` and `unpack` into a temporary directory.
//! Must not panic; errors are fine. Checked on every input:
//! - `unpack` writes nothing outside its destination: the rest of the temporary tree
//!   (a sibling directory with a file, a symlink to it) is unchanged, and on error the
//!   destination does not exist;
//! - `unpack` succeeds only where `parse` does, with the same hash and size (it may
//!   still fail where `parse` succeeds: the filesystem refuses names over NAME_MAX);
//! - round trip: what `unpack` wrote dumps back to exactly the NAR's bytes.
#![no_main]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use nsh_wire::nar;

/// (kind, mode, size or target) of every node under `root` except `skip`.
fn listing(root: &Path, skip: &Path) -> BTreeMap<String, (char, u32, String)> {
    let mut out = BTreeMap::new();
    walk(root, skip, root, &mut out);
    out
}

fn walk(root: &Path, skip: &Path, p: &Path, out: &mut BTreeMap<String, (char, u32, String)>) {
    if p == skip {
        return;
    }
    let m = fs::symlink_metadata(p).expect("stat");
    let rel = p
        .strip_prefix(root)
        .expect("under root")
        .display()
        .to_string();
    let ft = m.file_type();
    if ft.is_dir() {
        out.insert(rel, ('d', m.mode(), String::new()));
        for e in fs::read_dir(p).expect("read_dir") {
            walk(root, skip, &e.expect("entry").path(), out);
        }
    } else if ft.is_symlink() {
        let t = fs::read_link(p).expect("readlink");
        out.insert(rel, ('l', 0, t.display().to_string()));
    } else {
        let c = fs::read(p).expect("read");
        out.insert(rel, ('f', m.mode(), format!("{c:?}")));
    }
}

fn scratch_base() -> &'static Path {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() { shm } else { Path::new("/tmp") }
}

fn make_writable(p: &Path) {
    if let Ok(m) = fs::symlink_metadata(p)
        && m.is_dir()
    {
        let _ = fs::set_permissions(p, fs::Permissions::from_mode(0o700));
        if let Ok(rd) = fs::read_dir(p) {
            for e in rd.flatten() {
                make_writable(&e.path());
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let parsed = nar::parse(&mut &data[..]);

    let tmp = tempfile::Builder::new()
        .prefix("nsh-fuzz-nar")
        .tempdir_in(scratch_base())
        .expect("tempdir");
    let root = tmp.path();
    // Bait a decoder that follows names or symlinks: a sibling directory, a file in it,
    // and a symlink next to the destination pointing at it.
    fs::create_dir(root.join("outside")).expect("mkdir");
    fs::write(root.join("outside/x"), b"untouched").expect("write");
    std::os::unix::fs::symlink("outside", root.join("x")).expect("symlink");
    fs::create_dir(root.join("store")).expect("mkdir");
    let dest = root.join("store/out");
    let before = listing(root, &dest);

    let unpacked = nar::unpack(&mut &data[..], &dest);

    let after = listing(root, &dest);
    assert_eq!(before, after, "unpack wrote outside its destination");
    match (&unpacked, &parsed) {
        (Ok(u), Ok(p)) => {
            assert_eq!(u, p, "parse and unpack disagree on the NAR's hash/size");
            let len = usize::try_from(u.size).expect("size");
            let mut again = Vec::new();
            nar::dump(&dest, &mut again).expect("dump of the unpacked tree");
            assert!(
                again == data[..len],
                "round trip: dump(unpack(x)) != x ({} vs {len} bytes)",
                again.len()
            );
        }
        (Ok(_), Err(e)) => panic!("unpack accepted what parse refused: {e}"),
        (Err(_), _) => {
            assert!(
                fs::symlink_metadata(&dest).is_err(),
                "unpack failed but left its destination behind"
            );
        }
    }
    make_writable(root);
});
