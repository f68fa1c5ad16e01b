//! Nix hashes: the algorithms Nix accepts, the four ways it writes a hash, and a streaming
//! hasher for each algorithm.
//!
//! | encoding | example (sha256) | chosen when parsing |
//! |---|---|---|
//! | base16 | `sha256:` + 64 hex digits | by length: 2 × size |
//! | Nix base-32 | `sha256:` + 52 digits of [`crate::nixbase32`] | by length |
//! | base64 | `sha256:` + 44 characters (padded) | by length |
//! | SRI | `sha256-` + base64 | by the `-` separator |
//!
//! Mirrors `Hash::parseAnyReturningFormat`, `Hash::parseNonSRIUnprefixed` and
//! `Hash::to_string` in Nix's `src/libutil/hash.cc`: the prefix is `algo:` (any encoding,
//! told apart by length) or `algo-` (SRI, always base64); without a prefix the algorithm
//! must be known from elsewhere (a `.drv` output's `hashAlgo`). `blake3` is accepted as
//! Nix ≥ 2.27 accepts it (behind its `blake3-hashes` experimental feature).
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha1::Digest as _;

/// A hash algorithm Nix accepts for fixed-output derivations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashAlgo {
    Md5,
    Sha1,
    Sha256,
    Sha512,
    Blake3,
}

impl HashAlgo {
    pub const ALL: [HashAlgo; 5] = [
        HashAlgo::Md5,
        HashAlgo::Sha1,
        HashAlgo::Sha256,
        HashAlgo::Sha512,
        HashAlgo::Blake3,
    ];

    /// Nix's name (`printHashAlgo`).
    pub fn name(self) -> &'static str {
        match self {
            HashAlgo::Md5 => "md5",
            HashAlgo::Sha1 => "sha1",
            HashAlgo::Sha256 => "sha256",
            HashAlgo::Sha512 => "sha512",
            HashAlgo::Blake3 => "blake3",
        }
    }

    /// Digest size in bytes.
    pub fn size(self) -> usize {
        match self {
            HashAlgo::Md5 => 16,
            HashAlgo::Sha1 => 20,
            HashAlgo::Sha256 | HashAlgo::Blake3 => 32,
            HashAlgo::Sha512 => 64,
        }
    }

    pub fn parse(s: &str) -> Result<HashAlgo, HashError> {
        HashAlgo::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| HashError::UnknownAlgo(show(s)))
    }
}

impl fmt::Display for HashAlgo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One of the four forms Nix writes a hash in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashFormat {
    Base16,
    Nix32,
    Base64,
    Sri,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HashError {
    #[error("unknown hash algorithm '{0}' (Nix accepts md5, sha1, sha256, sha512, blake3)")]
    UnknownAlgo(String),
    #[error("hash '{hash}' does not name its algorithm, and none is known from context")]
    NoAlgo { hash: String },
    #[error("hash '{hash}' should be a {expected} hash")]
    AlgoMismatch { hash: String, expected: HashAlgo },
    #[error("hash '{hash}' has the wrong length for {algo}")]
    BadLength { hash: String, algo: HashAlgo },
    #[error("hash '{hash}' is not valid {format}")]
    BadEncoding { hash: String, format: &'static str },
}

/// A digest together with its algorithm.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Hash {
    algo: HashAlgo,
    bytes: Vec<u8>,
}

impl Hash {
    /// A hash from raw digest bytes; `None` if the length is not the algorithm's.
    pub fn from_bytes(algo: HashAlgo, bytes: &[u8]) -> Option<Hash> {
        (bytes.len() == algo.size()).then(|| Hash {
            algo,
            bytes: bytes.to_vec(),
        })
    }

    pub fn algo(&self) -> HashAlgo {
        self.algo
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Any form Nix accepts: `algo:<base16|nix32|base64>`, SRI `algo-<base64>`, or no
    /// prefix when `algo` is given. A prefix must agree with `algo` if both are there.
    pub fn parse(s: &str, algo: Option<HashAlgo>) -> Result<Hash, HashError> {
        Ok(Hash::parse_with_format(s, algo)?.0)
    }

    /// [`Hash::parse`], also telling which form the string was in.
    pub fn parse_with_format(
        s: &str,
        algo: Option<HashAlgo>,
    ) -> Result<(Hash, HashFormat), HashError> {
        let (named, rest, sri) = match s.split_once(':') {
            Some((a, rest)) => (Some(HashAlgo::parse(a)?), rest, false),
            None => match s.split_once('-') {
                Some((a, rest)) => (Some(HashAlgo::parse(a)?), rest, true),
                None => (None, s, false),
            },
        };
        let algo = match (named, algo) {
            (Some(n), Some(a)) if n != a => {
                return Err(HashError::AlgoMismatch {
                    hash: show(s),
                    expected: a,
                });
            }
            (Some(a), _) | (None, Some(a)) => a,
            (None, None) => return Err(HashError::NoAlgo { hash: show(s) }),
        };
        if sri {
            return Ok((Hash::decode(rest, algo, HashFormat::Sri)?, HashFormat::Sri));
        }
        let format = format_from_len(rest, algo)?;
        Ok((Hash::decode(rest, algo, format)?, format))
    }

    /// A hash without prefix, in base16, Nix base-32 or base64 (told apart by length):
    /// what a `.drv` output holds next to its `hashAlgo` (`Hash::parseNonSRIUnprefixed`).
    pub fn parse_unprefixed(s: &str, algo: HashAlgo) -> Result<Hash, HashError> {
        let format = format_from_len(s, algo)?;
        Hash::decode(s, algo, format)
    }

    fn decode(s: &str, algo: HashAlgo, format: HashFormat) -> Result<Hash, HashError> {
        let bad = |name| HashError::BadEncoding {
            hash: show(s),
            format: name,
        };
        let bytes = match format {
            HashFormat::Base16 => hex::decode(s).map_err(|_| bad("base16"))?,
            HashFormat::Nix32 => crate::nixbase32::decode(s).map_err(|_| bad("Nix base-32"))?,
            HashFormat::Base64 => BASE64.decode(s).map_err(|_| bad("base64"))?,
            HashFormat::Sri => BASE64.decode(s).map_err(|_| bad("SRI (base64)"))?,
        };
        Hash::from_bytes(algo, &bytes).ok_or_else(|| HashError::BadLength {
            hash: show(s),
            algo,
        })
    }

    /// The digest alone in `format` (SRI includes its `algo-` prefix, the others none).
    pub fn encode(&self, format: HashFormat) -> String {
        match format {
            HashFormat::Base16 => hex::encode(&self.bytes),
            HashFormat::Nix32 => crate::nixbase32::encode(&self.bytes),
            HashFormat::Base64 => BASE64.encode(&self.bytes),
            HashFormat::Sri => format!("{}-{}", self.algo, BASE64.encode(&self.bytes)),
        }
    }

    /// `algo-<base64>`, the form Nix shows in its messages.
    pub fn to_sri(&self) -> String {
        self.encode(HashFormat::Sri)
    }

    /// `algo:<digest in format>`.
    pub fn to_prefixed(&self, format: HashFormat) -> String {
        match format {
            HashFormat::Sri => self.to_sri(),
            f => format!("{}:{}", self.algo, self.encode(f)),
        }
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_sri())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_sri())
    }
}

/// Nix's `baseFromSize`: the encoding whose length matches the algorithm's digest.
fn format_from_len(s: &str, algo: HashAlgo) -> Result<HashFormat, HashError> {
    let n = algo.size();
    if s.len() == 2 * n {
        Ok(HashFormat::Base16)
    } else if s.len() == crate::nixbase32::encoded_len(n) {
        Ok(HashFormat::Nix32)
    } else if s.len() == n.div_ceil(3) * 4 {
        Ok(HashFormat::Base64)
    } else {
        Err(HashError::BadLength {
            hash: show(s),
            algo,
        })
    }
}

/// Untrusted text for messages: at most 200 characters, control characters escaped.
fn show(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(200)
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect();
    if s.chars().count() > 200 {
        out.push('…');
    }
    out
}

/// A running hash of any [`HashAlgo`].
#[derive(Clone)]
pub enum Hasher {
    Md5(md5::Md5),
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
    Blake3(Box<blake3::Hasher>),
}

impl Hasher {
    pub fn new(algo: HashAlgo) -> Hasher {
        match algo {
            HashAlgo::Md5 => Hasher::Md5(md5::Md5::new()),
            HashAlgo::Sha1 => Hasher::Sha1(sha1::Sha1::new()),
            HashAlgo::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            HashAlgo::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
            HashAlgo::Blake3 => Hasher::Blake3(Box::new(blake3::Hasher::new())),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Md5(h) => h.update(data),
            Hasher::Sha1(h) => h.update(data),
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
            Hasher::Blake3(h) => {
                h.update(data);
            }
        }
    }

    pub fn finish(self) -> Hash {
        let (algo, bytes): (HashAlgo, Vec<u8>) = match self {
            Hasher::Md5(h) => (HashAlgo::Md5, h.finalize().to_vec()),
            Hasher::Sha1(h) => (HashAlgo::Sha1, h.finalize().to_vec()),
            Hasher::Sha256(h) => (HashAlgo::Sha256, h.finalize().to_vec()),
            Hasher::Sha512(h) => (HashAlgo::Sha512, h.finalize().to_vec()),
            Hasher::Blake3(h) => (HashAlgo::Blake3, h.finalize().as_bytes().to_vec()),
        };
        Hash { algo, bytes }
    }
}

/// Hashes `data` at once.
pub fn hash_bytes(algo: HashAlgo, data: &[u8]) -> Hash {
    let mut h = Hasher::new(algo);
    h.update(data);
    h.finish()
}

#[cfg(test)]
#[path = "hash_tests.rs"]
mod tests;
