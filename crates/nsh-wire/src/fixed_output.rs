//! Fixed-output derivations: what a `.drv` output's `hashAlgo` and `hash` promise, the
//! check of a received output against it, and the `ca` field Nix records for it.
//!
//! In the `.drv` an FOD output is `("out","/nix/store/…","r:sha256","<base16>")`: the
//! method prefix (`""` flat, `r:` recursive, `text:` text, `git:` git) and the algorithm
//! in `hashAlgo`, the digest in base16 (Nix writes base16; it reads any unprefixed form,
//! `Hash::parseNonSRIUnprefixed`). Mirrors `parseDerivationOutput` in Nix's
//! `src/libstore/derivations.cc` and `ContentAddress::render` in `content-address.cc`.
//!
//! - Flat: the output must be one regular, non-executable file; the hash is over its
//!   contents (Nix's rule in `derivation-builder.cc`, "should be a non-executable regular
//!   file since recursive hashing is not enabled").
//! - Recursive: the hash is over the output's NAR.
//! - Text (dynamic derivations) and git (git hashing) are experimental in Nix: refused
//!   with [`FodError::UnsupportedMethod`].
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use crate::hash::{Hash, HashAlgo, HashError, HashFormat};
use crate::nar::RootKind;

/// How an FOD's output is hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `outputHashMode = "flat"`: the contents of a single regular file.
    Flat,
    /// `outputHashMode = "recursive"` (`nar`): the NAR serialisation.
    Recursive,
}

/// The hash a fixed output must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixedOutputHash {
    pub method: Method,
    pub hash: Hash,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FodError {
    #[error(
        "its output hash mode '{0}' is not supported by nsh (only flat and recursive \
         fixed outputs are)"
    )]
    UnsupportedMethod(String),
    #[error("bad output hash: {0}")]
    Hash(#[from] HashError),
    #[error(
        "the output should be a non-executable regular file since recursive hashing is \
         not enabled (outputHashMode = flat), but it is {0}"
    )]
    NotAFlatFile(&'static str),
    #[error("hash mismatch:\n  specified: {specified}\n     got:    {got}")]
    Mismatch { specified: String, got: String },
}

impl FixedOutputHash {
    /// From a `.drv` output's `hashAlgo` and `hash`; `Ok(None)` if it is not a fixed
    /// output (no `hashAlgo`, or no `hash`: floating or impure).
    pub fn from_drv_output(hash_algo: &str, hash: &str) -> Result<Option<Self>, FodError> {
        if hash_algo.is_empty() || hash.is_empty() || hash == "impure" {
            return Ok(None);
        }
        let (method, algo) = if let Some(a) = hash_algo.strip_prefix("r:") {
            (Method::Recursive, a)
        } else if let Some((m, _)) = hash_algo.split_once(':') {
            return Err(FodError::UnsupportedMethod(m.chars().take(32).collect()));
        } else {
            (Method::Flat, hash_algo)
        };
        let algo = HashAlgo::parse(algo)?;
        let hash = Hash::parse_unprefixed(hash, algo)?;
        Ok(Some(FixedOutputHash { method, hash }))
    }

    /// What to hash while unpacking, for [`crate::nar::unpack_checked`].
    pub fn content_hash(&self) -> crate::nar::ContentHash {
        match self.method {
            Method::Flat => crate::nar::ContentHash::FlatFile(self.hash.algo()),
            Method::Recursive => crate::nar::ContentHash::Nar(self.hash.algo()),
        }
    }

    /// The `ca` field Nix records for this output when it builds it itself:
    /// `fixed:sha256:<nix32>` (flat) or `fixed:r:sha256:<nix32>` (recursive).
    pub fn ca(&self) -> String {
        let m = match self.method {
            Method::Flat => "",
            Method::Recursive => "r:",
        };
        format!(
            "fixed:{m}{}:{}",
            self.hash.algo(),
            self.hash.encode(HashFormat::Nix32)
        )
    }

    /// Checks what was unpacked: the root's kind (flat) and the hash computed while
    /// unpacking (`got`, `None` if the unpacker was not asked for it).
    pub fn verify(&self, root: RootKind, got: Option<&Hash>) -> Result<(), FodError> {
        if self.method == Method::Flat {
            match root {
                RootKind::Regular { executable: false } => {}
                RootKind::Regular { executable: true } => {
                    return Err(FodError::NotAFlatFile("an executable file"));
                }
                RootKind::Symlink => return Err(FodError::NotAFlatFile("a symlink")),
                RootKind::Directory => return Err(FodError::NotAFlatFile("a directory")),
            }
        }
        match got {
            Some(g) if *g == self.hash => Ok(()),
            Some(g) => Err(FodError::Mismatch {
                specified: self.hash.to_sri(),
                got: g.to_sri(),
            }),
            None => Err(FodError::Mismatch {
                specified: self.hash.to_sri(),
                got: "(nothing was hashed)".into(),
            }),
        }
    }
}
