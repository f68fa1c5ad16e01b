//! Content ids: the agent binary is stored on the cluster under the blake3 of its bytes, so
//! a changed binary gets a new name and an unchanged one is never uploaded twice.

/// The first 16 bytes of the blake3 hash, hex: short enough for paths, long enough to be
/// collision-free among agent builds.
pub fn content_id(bytes: &[u8]) -> String {
    hex::encode(&blake3::hash(bytes).as_bytes()[..16])
}

/// File name of the agent binary with this content id.
pub fn agent_file_name(id: &str) -> String {
    format!("nsh-remote-{id}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn stable_id() {
        assert_eq!(super::content_id(b"").len(), 32);
        assert_eq!(super::content_id(b"abc"), super::content_id(&b"abcd"[..3]));
    }
}
