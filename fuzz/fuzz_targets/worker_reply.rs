//! What the agent reads from `nix-daemon --stdio`: the handshake reply and `STDERR_*`
//! messages, on arbitrary bytes, at the protocol versions Nix 2.8 (1.34) and later (1.35)
//! settle on, and one before structured errors (1.25). Must not panic; errors are fine.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nsh_wire::worker_protocol::{CLIENT_VERSION, Stderr, client_handshake, read_stderr};

fuzz_target!(|data: &[u8]| {
    let mut r = data;
    let _ = client_handshake(&mut r, &mut std::io::sink(), &mut |_| {});
    for version in [1 << 8 | 25, 1 << 8 | 34, CLIENT_VERSION] {
        let mut r = data;
        for _ in 0..64 {
            match read_stderr(&mut r, version) {
                Ok(Stderr::Last) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
});
