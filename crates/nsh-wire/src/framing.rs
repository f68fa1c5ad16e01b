//! Nix wire primitives, as spoken on the build-hook pipe and inside NAR/export streams.
//!
//! ```plain
//! u64     = 8 bytes little-endian
//! bytes   = u64 len, len bytes, zero padding to a multiple of 8
//! strlist = u64 count, count * bytes
//! ```
//!
//! Mirrors Nix `src/libutil/serialise.cc` (`readNum`, `readString`, `readStrings`).
//! Every length read from input is checked against a caller-given limit *before*
//! anything is allocated, and padding must be zero (Nix checks it too).
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::{self, Read, Write};

/// Errors of the wire primitives. `what` names the field being read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    #[error("unexpected end of stream reading {what}")]
    UnexpectedEof { what: &'static str },
    #[error("{what} is {len} bytes long, more than the limit of {max}")]
    TooLong {
        what: &'static str,
        len: u64,
        max: u64,
    },
    #[error("non-zero padding after {what}")]
    BadPadding { what: &'static str },
    #[error("{what} is not valid UTF-8")]
    NotUtf8 { what: &'static str },
    #[error("reading {what}")]
    Io {
        what: &'static str,
        #[source]
        source: io::Error,
    },
}

impl WireError {
    pub(crate) fn from_io(what: &'static str, e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            WireError::UnexpectedEof { what }
        } else {
            WireError::Io { what, source: e }
        }
    }
}

/// Number of zero bytes that follow a string of `len` bytes.
pub fn padding_len(len: u64) -> usize {
    // (8 - len % 8) % 8 is always < 8, so the cast is lossless.
    ((8 - len % 8) % 8) as usize
}

/// Reads one u64 (little-endian).
pub fn read_u64(r: &mut impl Read) -> Result<u64, WireError> {
    read_u64_named(r, "integer")
}

pub(crate) fn read_u64_named(r: &mut impl Read, what: &'static str) -> Result<u64, WireError> {
    let mut buf = [0u8; 8];
    r.read_exact(&mut buf)
        .map_err(|e| WireError::from_io(what, e))?;
    Ok(u64::from_le_bytes(buf))
}

/// Reads one u64, or `None` if the stream ends cleanly before its first byte.
/// A stream that ends inside the integer is an error.
pub fn read_u64_or_eof(r: &mut impl Read) -> Result<Option<u64>, WireError> {
    let mut buf = [0u8; 8];
    let mut got = 0usize;
    while got < buf.len() {
        let rest = buf.get_mut(got..).unwrap_or_default();
        match r.read(rest) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(WireError::UnexpectedEof { what: "integer" }),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(WireError::from_io("integer", e)),
        }
    }
    Ok(Some(u64::from_le_bytes(buf)))
}

/// Reads and checks the zero padding after a string of `len` bytes.
pub(crate) fn read_padding(
    r: &mut impl Read,
    len: u64,
    what: &'static str,
) -> Result<(), WireError> {
    let pad = padding_len(len);
    if pad == 0 {
        return Ok(());
    }
    let mut buf = [0u8; 8];
    let slot = buf.get_mut(..pad).unwrap_or_default();
    r.read_exact(slot)
        .map_err(|e| WireError::from_io(what, e))?;
    if slot.iter().any(|&b| b != 0) {
        return Err(WireError::BadPadding { what });
    }
    Ok(())
}

/// Reads a length-prefixed, padded byte string of at most `max_len` bytes.
pub fn read_bytes(r: &mut impl Read, max_len: u64) -> Result<Vec<u8>, WireError> {
    read_bytes_named(r, max_len, "string")
}

pub(crate) fn read_bytes_named(
    r: &mut impl Read,
    max_len: u64,
    what: &'static str,
) -> Result<Vec<u8>, WireError> {
    let len = read_u64_named(r, what)?;
    read_body(r, len, max_len, what)
}

/// Reads the body and padding of a string whose length was already read.
pub(crate) fn read_body(
    r: &mut impl Read,
    len: u64,
    max_len: u64,
    what: &'static str,
) -> Result<Vec<u8>, WireError> {
    if len > max_len {
        return Err(WireError::TooLong {
            what,
            len,
            max: max_len,
        });
    }
    let n = usize::try_from(len).map_err(|_| WireError::TooLong {
        what,
        len,
        max: usize::MAX as u64,
    })?;
    let mut buf = vec![0u8; n];
    r.read_exact(&mut buf)
        .map_err(|e| WireError::from_io(what, e))?;
    read_padding(r, len, what)?;
    Ok(buf)
}

/// Reads a padded string of at most `max_len` bytes and checks it is UTF-8.
pub fn read_string(r: &mut impl Read, max_len: u64) -> Result<String, WireError> {
    read_string_named(r, max_len, "string")
}

pub(crate) fn read_string_named(
    r: &mut impl Read,
    max_len: u64,
    what: &'static str,
) -> Result<String, WireError> {
    let bytes = read_bytes_named(r, max_len, what)?;
    String::from_utf8(bytes).map_err(|_| WireError::NotUtf8 { what })
}

/// Reads a string list (Nix `Strings`/`StringSet`): a count, then that many strings.
pub fn read_string_list(
    r: &mut impl Read,
    max_count: u64,
    max_len: u64,
) -> Result<Vec<String>, WireError> {
    read_string_list_named(r, max_count, max_len, "string list")
}

pub(crate) fn read_string_list_named(
    r: &mut impl Read,
    max_count: u64,
    max_len: u64,
    what: &'static str,
) -> Result<Vec<String>, WireError> {
    let count = read_u64_named(r, what)?;
    if count > max_count {
        return Err(WireError::TooLong {
            what,
            len: count,
            max: max_count,
        });
    }
    // Cap the pre-allocation: the count is only trusted up to what actually arrives.
    let mut out = Vec::with_capacity(usize::try_from(count.min(1024)).unwrap_or(0));
    for _ in 0..count {
        out.push(read_string_named(r, max_len, what)?);
    }
    Ok(out)
}

/// Writes one u64 (little-endian).
pub fn write_u64(w: &mut impl Write, n: u64) -> io::Result<()> {
    w.write_all(&n.to_le_bytes())
}

/// Writes a length-prefixed byte string with zero padding.
pub fn write_bytes(w: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    let len = bytes.len() as u64;
    write_u64(w, len)?;
    w.write_all(bytes)?;
    write_padding(w, len)
}

/// Writes the zero padding that follows a string of `len` bytes.
pub fn write_padding(w: &mut impl Write, len: u64) -> io::Result<()> {
    let zeros = [0u8; 8];
    w.write_all(zeros.get(..padding_len(len)).unwrap_or_default())
}

/// Writes a string list: the count, then each string.
pub fn write_string_list<S: AsRef<[u8]>>(w: &mut impl Write, items: &[S]) -> io::Result<()> {
    write_u64(w, items.len() as u64)?;
    for s in items {
        write_bytes(w, s.as_ref())?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn string_roundtrip_and_padding() {
        for s in ["", "a", "1234567", "12345678", "123456789"] {
            let mut buf = Vec::new();
            write_bytes(&mut buf, s.as_bytes()).unwrap();
            assert_eq!(buf.len() % 8, 0);
            assert_eq!(buf.len(), 8 + s.len().div_ceil(8) * 8);
            let got = read_string(&mut buf.as_slice(), 100).unwrap();
            assert_eq!(got, s);
        }
    }

    #[test]
    fn exact_bytes_for_paren() {
        let mut buf = Vec::new();
        write_bytes(&mut buf, b"(").unwrap();
        assert_eq!(buf, [1, 0, 0, 0, 0, 0, 0, 0, b'(', 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn rejects_bad_padding() {
        let mut buf = Vec::new();
        write_bytes(&mut buf, b"abc").unwrap();
        buf[12] = 1;
        assert!(matches!(
            read_bytes(&mut buf.as_slice(), 100),
            Err(WireError::BadPadding { .. })
        ));
    }

    #[test]
    fn rejects_oversized_length_before_allocating() {
        for len in [1u64 << 30, u64::MAX] {
            let buf = len.to_le_bytes();
            assert!(matches!(
                read_bytes(&mut buf.as_slice(), 4096),
                Err(WireError::TooLong { len: l, max: 4096, .. }) if l == len
            ));
        }
        let mut buf = Vec::new();
        write_u64(&mut buf, u64::MAX).unwrap();
        assert!(matches!(
            read_string_list(&mut buf.as_slice(), 10, 10),
            Err(WireError::TooLong { .. })
        ));
    }

    #[test]
    fn truncation_is_unexpected_eof() {
        let mut buf = Vec::new();
        write_bytes(&mut buf, b"hello").unwrap();
        for cut in 1..buf.len() {
            let r = read_bytes(&mut &buf[..cut], 100);
            assert!(
                matches!(r, Err(WireError::UnexpectedEof { .. })),
                "cut {cut}: {r:?}"
            );
        }
    }

    #[test]
    fn not_utf8() {
        let mut buf = Vec::new();
        write_bytes(&mut buf, b"\xff").unwrap();
        assert!(matches!(
            read_string(&mut buf.as_slice(), 10),
            Err(WireError::NotUtf8 { .. })
        ));
    }

    #[test]
    fn u64_or_eof() {
        assert_eq!(read_u64_or_eof(&mut &[][..]).unwrap(), None);
        assert!(read_u64_or_eof(&mut &[1, 2][..]).is_err());
        assert_eq!(
            read_u64_or_eof(&mut &[7, 0, 0, 0, 0, 0, 0, 0][..]).unwrap(),
            Some(7)
        );
    }

    #[test]
    fn string_list_roundtrip() {
        let mut buf = Vec::new();
        write_string_list(&mut buf, &["a", "bb", ""]).unwrap();
        let got = read_string_list(&mut buf.as_slice(), 10, 10).unwrap();
        assert_eq!(got, ["a", "bb", ""]);
        assert!(read_string_list(&mut buf.as_slice(), 2, 10).is_err());
    }
}
