//! The agent-protocol decoder on arbitrary bytes: `decode_body` for both directions'
//! messages and `read_frame` over a stream of frames. Must not panic; errors are fine.
//! Round trip: whatever decodes re-encodes to a frame that decodes to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nsh_wire::agent_protocol::{AgentMsg, ClientMsg};
use nsh_wire::codec;

fn round_trip<T>(msg: &T)
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let frame = codec::encode_frame(msg).expect("a decoded message encodes");
    let back: T = codec::decode_body(&frame[4..]).expect("an encoded message decodes");
    assert_eq!(&back, msg);
    let mut r = &frame[..];
    let again: Option<T> = codec::read_frame(&mut r).expect("read_frame of an encoded frame");
    assert_eq!(again.as_ref(), Some(msg));
    assert!(r.is_empty());
}

fn stream<T>(data: &[u8])
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let mut r = data;
    for _ in 0..64 {
        match codec::read_frame::<T>(&mut r) {
            Ok(Some(m)) => round_trip(&m),
            Ok(None) | Err(_) => break,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = codec::decode_body::<AgentMsg>(data) {
        round_trip(&m);
    }
    if let Ok(m) = codec::decode_body::<ClientMsg>(data) {
        round_trip(&m);
    }
    stream::<AgentMsg>(data);
    stream::<ClientMsg>(data);
});
