//! Test-only misbehaviour, compiled in only with the `fault-injection` feature.
//! `NSH_FAULT=corrupt-nar` flips one byte of the first NAR the agent sends (after it was
//! hashed), so a test can check that the client refuses it.

pub const FAULT_ENV: &str = "NSH_FAULT";

pub struct NarFault {
    armed: bool,
}

impl NarFault {
    pub fn from_env() -> NarFault {
        let armed = std::env::var(FAULT_ENV)
            .map(|v| v.split(',').any(|f| f.trim() == "corrupt-nar"))
            .unwrap_or(false);
        if armed {
            crate::log::log!("fault injection: corrupting this NAR");
        }
        NarFault { armed }
    }

    /// Flips a byte of the block at NAR offset `offset` once, past the NAR header.
    pub fn apply(&mut self, offset: u64, data: &mut [u8]) {
        if !self.armed {
            return;
        }
        let at = 200u64.saturating_sub(offset) as usize;
        if let Some(b) = data.get_mut(at) {
            *b ^= 0x01;
            self.armed = false;
        }
    }
}
