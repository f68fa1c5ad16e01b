//! Nix's base32 ("nix32"), used for store path hashes and `sha256:<nix32>` NAR hashes.
//!
//! The alphabet omits `e o u t`. Unlike RFC 4648 the digits are taken from the end of the
//! byte string: character `k` of the output (counting from the right) holds bits
//! `5k .. 5k+5` of the bytes read as one little-endian number. Mirrors
//! `Hash::to_string(HashFormat::Nix32)` / `decodeHash` in Nix's `libutil/hash.cc`.

/// The 32 digits, in value order.
pub const ALPHABET: &[u8; 32] = b"0123456789abcdfghijklmnpqrsvwxyz";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("invalid nix32 character {0:?}")]
    InvalidChar(char),
    #[error("nix32 string of {len} characters cannot hold {bytes} bytes")]
    BadLength { len: usize, bytes: usize },
    #[error("nix32 string has bits set beyond its {bytes} bytes")]
    Overflow { bytes: usize },
}

/// Number of nix32 characters that encode `bytes` bytes.
pub const fn encoded_len(bytes: usize) -> usize {
    if bytes == 0 {
        0
    } else {
        (bytes * 8 - 1) / 5 + 1
    }
}

/// Number of bytes a nix32 string of `chars` characters decodes to.
pub const fn decoded_len(chars: usize) -> usize {
    chars * 5 / 8
}

/// Encodes `input` the way Nix prints hashes.
pub fn encode(input: &[u8]) -> String {
    let len = encoded_len(input.len());
    let mut out = String::with_capacity(len);
    for n in (0..len).rev() {
        let b = n * 5;
        let (i, j) = (b / 8, b % 8);
        let lo = input.get(i).map_or(0, |&x| u16::from(x) >> j);
        let hi = input.get(i + 1).map_or(0, |&x| u16::from(x) << (8 - j));
        let digit = usize::from((lo | hi) & 0x1f);
        out.push(char::from(ALPHABET.get(digit).copied().unwrap_or(b'0')));
    }
    out
}

fn digit_value(c: u8) -> Option<u8> {
    ALPHABET
        .iter()
        .position(|&a| a == c)
        .and_then(|p| u8::try_from(p).ok())
}

/// Decodes a nix32 string into bytes (32 bytes for a 52-character sha256).
pub fn decode(input: &str) -> Result<Vec<u8>, Error> {
    let s = input.as_bytes();
    let bytes = decoded_len(s.len());
    if encoded_len(bytes) != s.len() {
        return Err(Error::BadLength {
            len: s.len(),
            bytes,
        });
    }
    let mut out = vec![0u8; bytes];
    for (n, &c) in s.iter().rev().enumerate() {
        let digit = digit_value(c).ok_or(Error::InvalidChar(char::from(c)))?;
        let b = n * 5;
        let (i, j) = (b / 8, b % 8);
        let value = u16::from(digit) << j;
        match out.get_mut(i) {
            Some(byte) => *byte |= (value & 0xff) as u8,
            None => return Err(Error::Overflow { bytes }),
        }
        let carry = (value >> 8) as u8;
        if carry != 0 {
            match out.get_mut(i + 1) {
                Some(byte) => *byte |= carry,
                None => return Err(Error::Overflow { bytes }),
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ABC_HEX: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    /// `nix hash convert --to nix32 sha256:$(printf abc | sha256sum)` (Nix's tests/hash.sh).
    const ABC_NIX32: &str = "1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s";

    #[test]
    fn known_sha256_pair() {
        let digest = hex::decode(ABC_HEX).unwrap();
        assert_eq!(encode(&digest), ABC_NIX32);
        assert_eq!(decode(ABC_NIX32).unwrap(), digest);
    }

    /// A real pair from Nix 2.34: `nix-store -q --hash P` and `nix-store --dump P | sha256sum`.
    #[test]
    fn matches_nix_store_query_hash() {
        let printed = "12a6h9488078aipy8xc900cw78hxfy7bmdf5sada5195lw2y1a5j";
        let dumped = "b2a8e005a72585a29ad2c5b5ba8e771da2c319008975e46f54e8008448824689";
        assert_eq!(hex::encode(decode(printed).unwrap()), dumped);
        assert_eq!(encode(&hex::decode(dumped).unwrap()), printed);
    }

    #[test]
    fn round_trips_store_path_hash_length() {
        for len in [0usize, 1, 5, 20, 32, 64] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let s = encode(&bytes);
            assert_eq!(s.len(), encoded_len(len));
            assert_eq!(decode(&s).unwrap(), bytes, "len {len}");
        }
    }

    #[test]
    fn refuses_bad_input() {
        assert!(matches!(
            decode("1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5e"),
            Err(Error::InvalidChar('e'))
        ));
        assert!(matches!(decode("abc"), Err(Error::BadLength { .. })));
        // 52 chars carry 260 bits for 256: the top digit may only use its lowest bit.
        assert!(matches!(
            decode("zb8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s"),
            Err(Error::Overflow { .. })
        ));
    }
}
