//! Framing of agent-protocol messages: a little-endian u32 length, then the bincode body.
//!
//! bincode is pinned at 2.0.1 (3.0 is an empty tombstone); keeping every bincode call in
//! this file makes a swap to a compatible crate a one-file change.

use serde::{Serialize, de::DeserializeOwned};

use crate::agent_protocol::CHUNK_SIZE;

/// Frames larger than this are refused before any allocation: a chunk plus headroom for the
/// longest message that carries path lists.
pub const MAX_FRAME: usize = CHUNK_SIZE + (16 << 20);

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("frame of {len} bytes exceeds the limit of {MAX_FRAME} bytes")]
    TooLarge { len: usize },
    #[error("cannot encode message: {0}")]
    Encode(#[from] bincode::error::EncodeError),
    #[error("malformed message: {0}")]
    Decode(#[from] bincode::error::DecodeError),
    #[error("malformed message: {trailing} bytes after its end")]
    Trailing { trailing: usize },
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard()
        .with_little_endian()
        .with_variable_int_encoding()
        .with_limit::<MAX_FRAME>()
}

/// Encodes `msg` as a whole frame (length prefix included).
pub fn encode_frame<T: Serialize>(msg: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = vec![0u8; 4];
    bincode::serde::encode_into_std_write(msg, &mut out, config())?;
    let len = out.len() - 4;
    if len > MAX_FRAME {
        return Err(CodecError::TooLarge { len });
    }
    out[..4].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(out)
}

/// Reads the length prefix of a frame, refusing oversized ones.
pub fn frame_len(header: [u8; 4]) -> Result<usize, CodecError> {
    let len = u32::from_le_bytes(header) as usize;
    if len > MAX_FRAME {
        return Err(CodecError::TooLarge { len });
    }
    Ok(len)
}

/// Decodes a frame body (without its length prefix). The whole body must be used.
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, CodecError> {
    let (msg, used) = bincode::serde::decode_from_slice(body, config())?;
    if used != body.len() {
        return Err(CodecError::Trailing {
            trailing: body.len() - used,
        });
    }
    Ok(msg)
}

/// Blocking read of one frame from a std reader. `Ok(None)` on a clean EOF before a frame.
pub fn read_frame<T: DeserializeOwned>(
    r: &mut impl std::io::Read,
) -> Result<Option<T>, std::io::Error> {
    let mut header = [0u8; 4];
    match r.read_exact(&mut header) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = frame_len(header).map_err(invalid)?;
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    decode_body(&body).map(Some).map_err(invalid)
}

/// Blocking write of one frame to a std writer.
pub fn write_frame<T: Serialize>(w: &mut impl std::io::Write, msg: &T) -> std::io::Result<()> {
    let frame = encode_frame(msg).map_err(invalid)?;
    w.write_all(&frame)
}

fn invalid(e: CodecError) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent_protocol::{AgentMsg, ClientMsg};

    #[test]
    fn round_trip() {
        let msg = ClientMsg::QueryMissing {
            paths: vec!["/nix/store/aaaa-x".into()],
        };
        let frame = encode_frame(&msg).unwrap();
        let back: ClientMsg = read_frame(&mut &frame[..]).unwrap().unwrap();
        assert_eq!(back, msg);
    }

    #[test]
    fn refuses_oversized_length() {
        let mut frame = (u32::MAX).to_le_bytes().to_vec();
        frame.extend_from_slice(&[0; 16]);
        assert!(read_frame::<AgentMsg>(&mut &frame[..]).is_err());
    }

    #[test]
    fn refuses_garbage_and_trailing_bytes() {
        let mut frame = encode_frame(&AgentMsg::Pong).unwrap();
        frame.push(0);
        let len = (frame.len() - 4) as u32;
        frame[..4].copy_from_slice(&len.to_le_bytes());
        assert!(read_frame::<AgentMsg>(&mut &frame[..]).is_err());
        let junk = [3, 0, 0, 0, 0xff, 0xff, 0xff];
        assert!(read_frame::<AgentMsg>(&mut &junk[..]).is_err());
    }

    #[test]
    fn clean_eof_is_none() {
        assert!(read_frame::<AgentMsg>(&mut &[][..]).unwrap().is_none());
    }
}
