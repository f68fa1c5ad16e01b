//! Records the `ca` (content address) of fixed outputs in Nix's database, so that `nix
//! path-info` shows it and Nix treats the paths as content-addressed, as it does when it
//! builds an FOD itself.
//!
//! No interface of Nix 2.8 – 2.34 can do this while the waiting Nix holds the outputs'
//! locks (docs/architecture.md, "Registering outputs"): `nix-store --register-validity`
//! reads no `ca` (`decodeValidPathInfo`), and every call that does take one (`AddToStoreNar`,
//! `--import`, `--add-fixed`) takes the path lock, or does nothing for a path already
//! valid. So after `--register-validity` nsh sets the one column itself:
//! `UPDATE ValidPaths SET ca = ? WHERE path = ?`, in one transaction, with a busy
//! timeout (SQLite's own locking makes this safe next to a running Nix, which writes the
//! same file from many processes). Guarded: only schema version 10 (Nix 2.0 to at least
//! 2.34; the `ca` column has been there since), only a row that exists and has no other
//! `ca`. Any failure is reported as a warning: the output is valid and was checked
//! against its hash; only the metadata is missing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// The database schema version whose `ValidPaths.ca` column this writes.
const KNOWN_SCHEMA: &str = "10";

/// Nix's state directory for a local store (`stateDir` of `LocalFSStore`): `state=` of
/// the store URL, else `<root>/nix/var/nix` for a chroot store, else `NIX_STATE_DIR`,
/// else `/nix/var/nix`.
pub fn state_dir(url_params: Option<&str>, root: Option<&Path>) -> PathBuf {
    if let Some(state) = url_params
        .into_iter()
        .flat_map(|p| p.split('&'))
        .find_map(|kv| kv.strip_prefix("state="))
    {
        return PathBuf::from(state);
    }
    if let Some(r) = root {
        return r.join("nix/var/nix");
    }
    std::env::var_os("NIX_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/nix/var/nix"))
}

/// Sets `ca` for each `(store path, ca)`; all or nothing.
pub fn set_content_addresses(state_dir: &Path, cas: &[(String, String)]) -> Result<()> {
    if cas.is_empty() {
        return Ok(());
    }
    let db_dir = state_dir.join("db");
    let schema_file = db_dir.join("schema");
    let schema = std::fs::read_to_string(&schema_file)
        .with_context(|| format!("cannot read {}", schema_file.display()))?;
    if schema.trim() != KNOWN_SCHEMA {
        bail!(
            "{} says schema version {}, nsh writes only version {KNOWN_SCHEMA}",
            schema_file.display(),
            schema.trim()
        );
    }
    let db = db_dir.join("db.sqlite");
    let mut conn = rusqlite::Connection::open_with_flags(
        &db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("cannot open {}", db.display()))?;
    conn.busy_timeout(Duration::from_secs(60))?;
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    for (path, ca) in cas {
        let n = tx
            .execute(
                "update ValidPaths set ca = ?1 where path = ?2 and (ca is null or ca = '' or ca = ?1)",
                rusqlite::params![ca, path],
            )
            .with_context(|| format!("cannot set ca of {path} in {}", db.display()))?;
        if n != 1 {
            bail!(
                "{path} is not registered in {}, or has another ca",
                db.display()
            );
        }
    }
    tx.commit()
        .with_context(|| format!("cannot commit to {}", db.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database with Nix's `ValidPaths` table (schema.sql of Nix 2.8 and 2.34).
    fn fake_state(schema: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("db")).unwrap();
        std::fs::write(dir.path().join("db/schema"), schema).unwrap();
        let conn = rusqlite::Connection::open(dir.path().join("db/db.sqlite")).unwrap();
        conn.execute_batch(
            "pragma journal_mode = wal;
             create table ValidPaths (id integer primary key autoincrement not null,
               path text unique not null, hash text not null, registrationTime integer not null,
               deriver text, narSize integer, ultimate integer, sigs text, ca text);
             insert into ValidPaths (path, hash, registrationTime) values
               ('/nix/store/a-x', 'sha256:00', 1), ('/nix/store/b-y', 'sha256:00', 1);",
        )
        .unwrap();
        dir
    }

    fn ca_of(state: &Path, path: &str) -> Option<String> {
        let conn = rusqlite::Connection::open(state.join("db/db.sqlite")).unwrap();
        conn.query_row("select ca from ValidPaths where path = ?1", [path], |r| {
            r.get(0)
        })
        .unwrap()
    }

    #[test]
    fn sets_ca_all_or_nothing() {
        let st = fake_state("10");
        let one = |p: &str, ca: &str| (p.to_string(), ca.to_string());
        set_content_addresses(st.path(), &[one("/nix/store/a-x", "fixed:r:sha256:abc")]).unwrap();
        assert_eq!(
            ca_of(st.path(), "/nix/store/a-x").as_deref(),
            Some("fixed:r:sha256:abc")
        );
        // Again with the same value: fine. Another value, or a path not registered: refused,
        // and nothing of that call is kept.
        set_content_addresses(st.path(), &[one("/nix/store/a-x", "fixed:r:sha256:abc")]).unwrap();
        assert!(
            set_content_addresses(
                st.path(),
                &[
                    one("/nix/store/b-y", "fixed:sha1:q"),
                    one("/nix/store/a-x", "fixed:md5:z")
                ]
            )
            .is_err()
        );
        assert_eq!(ca_of(st.path(), "/nix/store/b-y"), None);
        assert!(set_content_addresses(st.path(), &[one("/nix/store/c-z", "fixed:md5:z")]).is_err());
    }

    #[test]
    fn unknown_schema_is_left_alone() {
        let st = fake_state("11\n");
        let cas = [("/nix/store/a-x".to_string(), "fixed:sha256:abc".to_string())];
        let e = set_content_addresses(st.path(), &cas).unwrap_err();
        assert!(format!("{e:#}").contains("schema version 11"), "{e:#}");
        assert_eq!(ca_of(st.path(), "/nix/store/a-x"), None);
        assert!(set_content_addresses(Path::new("/nonexistent"), &cas).is_err());
    }

    #[test]
    fn state_dirs() {
        assert_eq!(
            state_dir(Some("root=/r&state=/s"), Some(Path::new("/r"))),
            PathBuf::from("/s")
        );
        assert_eq!(
            state_dir(Some("root=/r"), Some(Path::new("/r"))),
            PathBuf::from("/r/nix/var/nix")
        );
    }
}
