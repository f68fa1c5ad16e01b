//! Store path syntax: `<store_dir>/<32-char nixbase32 hash>-<name>`.
//!
//! Mirrors Nix `src/libstore/path.cc` (`checkName`, `StorePath::StorePath`) and
//! the hash alphabet of [`crate::nixbase32`]. The store directory is a
//! runtime value: nsh never assumes `/nix/store`.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::fmt;

/// Length of the hash part of a store path (160 bits in base 32).
pub const HASH_LEN: usize = 32;
/// Longest name part Nix accepts (`path.cc`: 211).
pub const MAX_NAME_LEN: usize = 211;

/// A parsed store path, without its store directory.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StorePath {
    /// 32 characters of nixbase32.
    pub hash: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StorePathError {
    #[error("'{path}' is not in the store directory '{store_dir}'")]
    NotInStore { path: String, store_dir: String },
    #[error("'{path}' is not directly below the store directory")]
    Nested { path: String },
    #[error("'{path}' has a malformed hash part (want 32 nixbase32 characters)")]
    BadHash { path: String },
    #[error("'{path}' lacks the '-' between hash and name")]
    NoDash { path: String },
    #[error("'{path}' has an invalid name: {why}")]
    BadName { path: String, why: &'static str },
}

impl StorePath {
    /// Parses an absolute store path; it must be exactly `<store_dir>/<hash>-<name>`.
    pub fn parse(full: &str, store_dir: &str) -> Result<StorePath, StorePathError> {
        let dir = store_dir.trim_end_matches('/');
        let base = full
            .strip_prefix(dir)
            .and_then(|rest| rest.strip_prefix('/'))
            .ok_or_else(|| StorePathError::NotInStore {
                path: shorten(full),
                store_dir: shorten(store_dir),
            })?;
        if base.contains('/') {
            return Err(StorePathError::Nested {
                path: shorten(full),
            });
        }
        Self::from_base_name(base).map_err(|e| e.with_path(full))
    }

    /// Parses the base name `<hash>-<name>` (no store directory).
    pub fn from_base_name(base: &str) -> Result<StorePath, StorePathError> {
        let bytes = base.as_bytes();
        let (Some(hash), Some(dash), Some(name)) = (
            bytes.get(..HASH_LEN),
            bytes.get(HASH_LEN),
            bytes.get(HASH_LEN + 1..),
        ) else {
            return Err(StorePathError::BadHash {
                path: shorten(base),
            });
        };
        if !hash.iter().all(|c| crate::nixbase32::ALPHABET.contains(c)) {
            return Err(StorePathError::BadHash {
                path: shorten(base),
            });
        }
        if *dash != b'-' {
            return Err(StorePathError::NoDash {
                path: shorten(base),
            });
        }
        check_name(name).map_err(|why| StorePathError::BadName {
            path: shorten(base),
            why,
        })?;
        // Both parts are ASCII by now, so these conversions cannot fail.
        Ok(StorePath {
            hash: String::from_utf8_lossy(hash).into_owned(),
            name: String::from_utf8_lossy(name).into_owned(),
        })
    }

    /// `<store_dir>/<hash>-<name>`.
    pub fn to_absolute(&self, store_dir: &str) -> String {
        format!("{}/{}", store_dir.trim_end_matches('/'), self.base_name())
    }

    /// `<hash>-<name>`.
    pub fn base_name(&self) -> String {
        format!("{}-{}", self.hash, self.name)
    }

    /// Whether this is a derivation (`.drv`) path.
    pub fn is_derivation(&self) -> bool {
        self.name.ends_with(".drv")
    }
}

impl fmt::Display for StorePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.hash, self.name)
    }
}

impl StorePathError {
    fn with_path(self, full: &str) -> Self {
        let path = shorten(full);
        match self {
            StorePathError::BadHash { .. } => StorePathError::BadHash { path },
            StorePathError::NoDash { .. } => StorePathError::NoDash { path },
            StorePathError::BadName { why, .. } => StorePathError::BadName { path, why },
            other => other,
        }
    }
}

/// Nix's name rule: 1..=211 bytes of `[A-Za-z0-9+\-._?=]`, not starting with `.`.
fn check_name(name: &[u8]) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty");
    }
    if name.len() > MAX_NAME_LEN {
        return Err("longer than 211 characters");
    }
    if name.first() == Some(&b'.') {
        return Err("starts with '.'");
    }
    if !name
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || b"+-._?=".contains(c))
    {
        return Err("contains a character outside [A-Za-z0-9+-._?=]");
    }
    Ok(())
}

/// Cuts untrusted text for error messages.
fn shorten(s: &str) -> String {
    const MAX: usize = 256;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", s.get(..end).unwrap_or_default())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    const SD: &str = "/nix/store";

    #[test]
    fn parse_ok() {
        let p = StorePath::parse("/nix/store/g1nbm7bq8ivlsbdhcrnbn1yh9x8ngfwz-f1.drv", SD).unwrap();
        assert_eq!(p.hash, "g1nbm7bq8ivlsbdhcrnbn1yh9x8ngfwz");
        assert_eq!(p.name, "f1.drv");
        assert!(p.is_derivation());
        assert_eq!(
            p.to_absolute("/nix/store/"),
            "/nix/store/g1nbm7bq8ivlsbdhcrnbn1yh9x8ngfwz-f1.drv"
        );
        assert_eq!(p.base_name(), "g1nbm7bq8ivlsbdhcrnbn1yh9x8ngfwz-f1.drv");
        let q = StorePath::parse(
            "/tmp/s/nix/store/g1nbm7bq8ivlsbdhcrnbn1yh9x8ngfwz-a+b-1.0_x?=y",
            "/tmp/s/nix/store",
        )
        .unwrap();
        assert!(!q.is_derivation());
    }

    #[test]
    fn parse_rejects() {
        let h = "g1nbm7bq8ivlsbdhcrnbn1yh9x8ngfwz";
        let long = "x".repeat(212);
        let bad = [
            format!("/nix/stor/{h}-a"),
            format!("/nix/store{h}-a"),
            format!("/nix/store/{h}-a/b"),
            format!("/nix/store/{h}-"),
            format!("/nix/store/{h}a"),
            format!("/nix/store/{h}-.a"),
            format!("/nix/store/{h}-a b"),
            format!("/nix/store/{h}-a/"),
            format!("/nix/store/{h}-{long}"),
            "/nix/store/e1nbm7bq8ivlsbdhcrnbn1yh9x8ngfwz-a".to_owned(),
            "/nix/store/g1nb-a".to_owned(),
            "/nix/store/".to_owned(),
            "/nix/store/é1nbm7bq8ivlsbdhcrnbn1yh9x8ngfw-a".to_owned(),
        ];
        for p in &bad {
            assert!(StorePath::parse(p, SD).is_err(), "{p}");
        }
        assert!(StorePath::parse(&format!("/nix/store/{h}-{}", "x".repeat(211)), SD).is_ok());
    }
}
