//! The zstd stream both ends put NARs in (uploads and outputs, see `agent_protocol`): one
//! level setting and one bound on what a decoder accepts, so the hook and the agent cannot
//! drift apart. Whatever arrives is the other end's data: the window bound keeps a hostile
//! frame from making the decoder allocate more than 2^27 bytes.

use std::io::{self, BufReader, Read, Write};
use std::ops::RangeInclusive;

/// Environment variable that overrides the level (the hook passes it on to the job).
pub const LEVEL_ENV: &str = "NSH_ZSTD_LEVEL";
/// Level 1: on the testbed a 213 MB output came back in 2.3 s at level 1 and 3.7 s at
/// level 3 (scripts/bench --only transfer); higher levels pay only on slow links.
pub const DEFAULT_LEVEL: i32 = 1;
/// The levels accepted; one outside is clamped to the nearest end (negative levels trade
/// ratio for speed, and those below -7 barely compress).
pub const LEVELS: RangeInclusive<i32> = -7..=19;
/// Largest window a decoder accepts, as a power of two (libzstd's own default limit, set
/// explicitly so it is a decision, not an accident of the library's version).
pub const WINDOW_LOG_MAX: u32 = 27;

/// The level `value` asks for: `None` or unparsable → [`DEFAULT_LEVEL`], else clamped to
/// [`LEVELS`].
pub fn level_from(value: Option<&str>) -> i32 {
    value
        .and_then(|v| v.trim().parse::<i32>().ok())
        .map_or(DEFAULT_LEVEL, |l| l.clamp(*LEVELS.start(), *LEVELS.end()))
}

/// The level `NSH_ZSTD_LEVEL` asks for, or the default.
pub fn level() -> i32 {
    level_from(std::env::var(LEVEL_ENV).ok().as_deref())
}

/// A compressing writer at [`level`].
pub fn encoder<W: Write>(to: W) -> io::Result<zstd::stream::write::Encoder<'static, W>> {
    zstd::stream::write::Encoder::new(to, level())
}

/// A decompressing writer (data written in comes out decompressed into `to`), bounded.
pub fn write_decoder<W: Write>(to: W) -> io::Result<zstd::stream::write::Decoder<'static, W>> {
    let mut d = zstd::stream::write::Decoder::new(to)?;
    d.window_log_max(WINDOW_LOG_MAX)?;
    Ok(d)
}

/// A decompressing reader over `from`, bounded.
pub fn read_decoder<R: Read>(
    from: R,
) -> io::Result<zstd::stream::read::Decoder<'static, BufReader<R>>> {
    let mut d = zstd::stream::read::Decoder::new(from)?;
    d.window_log_max(WINDOW_LOG_MAX)?;
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_parses_clamps_and_defaults() {
        assert_eq!(level_from(None), DEFAULT_LEVEL);
        assert_eq!(level_from(Some("")), DEFAULT_LEVEL);
        assert_eq!(level_from(Some("fast")), DEFAULT_LEVEL);
        assert_eq!(level_from(Some(" 3\n")), 3);
        assert_eq!(level_from(Some("-5")), -5);
        assert_eq!(level_from(Some("-100")), -7);
        assert_eq!(level_from(Some("99")), 19);
    }

    /// A streamed frame (no content size) that declares a window of 2^log.
    fn frame_with_window(log: u32) -> Vec<u8> {
        let mut e = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
        e.include_contentsize(false).unwrap();
        e.window_log(log).unwrap();
        e.write_all(&[7u8; 4096]).unwrap();
        e.finish().unwrap()
    }

    fn read_all(frame: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        read_decoder(frame)?.read_to_end(&mut out)?;
        Ok(out)
    }

    fn write_all(frame: &[u8]) -> io::Result<Vec<u8>> {
        let mut d = write_decoder(Vec::new())?;
        d.write_all(frame)?;
        d.flush()?;
        Ok(d.into_inner())
    }

    #[test]
    fn both_decoders_take_the_bound_and_refuse_past_it() {
        let ok = frame_with_window(WINDOW_LOG_MAX);
        assert_eq!(read_all(&ok).unwrap(), vec![7u8; 4096]);
        assert_eq!(write_all(&ok).unwrap(), vec![7u8; 4096]);
        let big = frame_with_window(WINDOW_LOG_MAX + 1);
        assert!(read_all(&big).is_err(), "reader accepted a 2^28 window");
        assert!(write_all(&big).is_err(), "writer accepted a 2^28 window");
    }

    #[test]
    fn encoder_round_trips_through_the_decoders() {
        let mut e = encoder(Vec::new()).unwrap();
        e.write_all(b"nar bytes").unwrap();
        let z = e.finish().unwrap();
        assert_eq!(read_all(&z).unwrap(), b"nar bytes");
    }
}
