//! Build-hook protocol messages (Nix → hook on stdin, hook → Nix on stderr).
//!
//! ```plain
//! settings = (u64 1, str name, str value)* u64 0
//! request  = str "try", u64 amWilling, str system, str drvPath, strlist requiredFeatures
//! after "# accept": strlist inputPaths, strlist wantedOutputs, then stdin closes
//! reply    = "# accept\n<machine>\n" | "# decline\n" | "# decline-permanently\n" | "# postpone\n"
//! ```
//!
//! Mirrors Nix `build-remote.cc` and `derivation-goal.cc` (`tryBuildHook`). As in
//! `build-remote`, EOF or any word other than `try` ends the session quietly.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::{self, Read, Write};

use crate::framing::{
    WireError, read_body, read_string_list_named, read_string_named, read_u64_named,
    read_u64_or_eof, write_bytes, write_string_list, write_u64,
};

/// Longest setting name; Nix names are short, this is generous.
pub const MAX_SETTING_NAME: u64 = 4096;
/// Longest setting value (e.g. a long `builders` or `substituters` list).
pub const MAX_SETTING_VALUE: u64 = 1 << 20;
/// Most settings in one block (Nix 2.8 sends about 90).
pub const MAX_SETTINGS: usize = 100_000;
/// Longest store path or system/feature string: well above PATH_MAX.
pub const MAX_PATH: u64 = 4096;
/// Most entries in one string list (input closure, features, outputs).
pub const MAX_COUNT: u64 = 1_000_000;
/// Longest request word; only "try" is meaningful.
const MAX_WORD: u64 = 64;

/// One `try` offer from Nix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// Whether Nix could build it locally right now (a free local slot).
    pub am_willing: bool,
    pub system: String,
    pub drv_path: String,
    pub required_features: Vec<String>,
}

/// What Nix sent after the settings: an offer, or the end of the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookRequest {
    Try(Offer),
    Eof,
}

/// The hook's answer to an offer, written to stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reply {
    Accept { machine: String },
    Decline,
    DeclinePermanently,
    Postpone,
}

impl Reply {
    /// The exact bytes Nix expects on stderr, newline-terminated.
    ///
    /// A newline in `machine` would desynchronise Nix's line reader, so it is
    /// replaced by a space.
    pub fn to_line(&self) -> String {
        match self {
            Reply::Accept { machine } => {
                format!("# accept\n{}\n", machine.replace(['\n', '\r'], " "))
            }
            Reply::Decline => "# decline\n".to_owned(),
            Reply::DeclinePermanently => "# decline-permanently\n".to_owned(),
            Reply::Postpone => "# postpone\n".to_owned(),
        }
    }
}

/// Errors reading hook messages.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HookError {
    #[error("reading hook settings")]
    Settings(#[source] WireError),
    #[error("unknown tag {tag} in hook settings (expected 0 or 1)")]
    BadSettingsTag { tag: u64 },
    #[error("more than {max} hook settings")]
    TooManySettings { max: usize },
    #[error("reading the build offer")]
    Request(#[source] WireError),
    #[error("reading the input paths and wanted outputs")]
    InputsOutputs(#[source] WireError),
}

/// Reads the settings block: `(1, name, value)*` terminated by `0`.
pub fn read_settings(r: &mut impl Read) -> Result<Vec<(String, String)>, HookError> {
    let mut out = Vec::new();
    loop {
        match read_u64_named(r, "settings tag").map_err(HookError::Settings)? {
            0 => return Ok(out),
            1 => {
                if out.len() >= MAX_SETTINGS {
                    return Err(HookError::TooManySettings { max: MAX_SETTINGS });
                }
                let name = read_string_named(r, MAX_SETTING_NAME, "setting name")
                    .map_err(HookError::Settings)?;
                let value = read_string_named(r, MAX_SETTING_VALUE, "setting value")
                    .map_err(HookError::Settings)?;
                out.push((name, value));
            }
            tag => return Err(HookError::BadSettingsTag { tag }),
        }
    }
}

/// Reads the next request. Clean EOF before it, or a word other than `try`,
/// yields [`HookRequest::Eof`] (like Nix's `build-remote`).
pub fn read_request(r: &mut impl Read) -> Result<HookRequest, HookError> {
    let Some(len) = read_u64_or_eof(r).map_err(HookError::Request)? else {
        return Ok(HookRequest::Eof);
    };
    let word = read_body(r, len, MAX_WORD, "request word").map_err(HookError::Request)?;
    if word != b"try" {
        return Ok(HookRequest::Eof);
    }
    let am_willing = read_u64_named(r, "amWilling").map_err(HookError::Request)? != 0;
    let system = read_string_named(r, MAX_PATH, "system").map_err(HookError::Request)?;
    let drv_path = read_string_named(r, MAX_PATH, "derivation path").map_err(HookError::Request)?;
    let required_features =
        read_string_list_named(r, MAX_COUNT, MAX_PATH, "required system features")
            .map_err(HookError::Request)?;
    Ok(HookRequest::Try(Offer {
        am_willing,
        system,
        drv_path,
        required_features,
    }))
}

/// Reads what Nix sends after `# accept`: the input closure (store paths) and the
/// wanted output names.
pub fn read_inputs_and_outputs(r: &mut impl Read) -> Result<(Vec<String>, Vec<String>), HookError> {
    let inputs = read_string_list_named(r, MAX_COUNT, MAX_PATH, "input paths")
        .map_err(HookError::InputsOutputs)?;
    let outputs = read_string_list_named(r, MAX_COUNT, MAX_PATH, "wanted outputs")
        .map_err(HookError::InputsOutputs)?;
    Ok((inputs, outputs))
}

/// Writes a settings block as Nix does (for tests and for forwarding to Nix's own hook).
pub fn write_settings<K: AsRef<str>, V: AsRef<str>>(
    w: &mut impl Write,
    settings: &[(K, V)],
) -> io::Result<()> {
    for (k, v) in settings {
        write_u64(w, 1)?;
        write_bytes(w, k.as_ref().as_bytes())?;
        write_bytes(w, v.as_ref().as_bytes())?;
    }
    write_u64(w, 0)
}

/// Writes a `try` offer as Nix does.
pub fn write_offer(w: &mut impl Write, offer: &Offer) -> io::Result<()> {
    write_bytes(w, b"try")?;
    write_u64(w, u64::from(offer.am_willing))?;
    write_bytes(w, offer.system.as_bytes())?;
    write_bytes(w, offer.drv_path.as_bytes())?;
    write_string_list(w, &offer.required_features)
}

/// Writes the input paths and wanted outputs Nix sends after `# accept`.
pub fn write_inputs_and_outputs<S: AsRef<[u8]>, T: AsRef<[u8]>>(
    w: &mut impl Write,
    inputs: &[S],
    outputs: &[T],
) -> io::Result<()> {
    write_string_list(w, inputs)?;
    write_string_list(w, outputs)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn offer_bytes(word: &str) -> Vec<u8> {
        let mut b = Vec::new();
        write_bytes(&mut b, word.as_bytes()).unwrap();
        write_u64(&mut b, 1).unwrap();
        write_bytes(&mut b, b"x86_64-linux").unwrap();
        write_bytes(&mut b, b"/nix/store/aaaa-foo.drv").unwrap();
        write_string_list(&mut b, &["kvm", "big-parallel"]).unwrap();
        b
    }

    #[test]
    fn settings_then_try_then_eof() {
        let mut b = Vec::new();
        for (k, v) in [("store", "auto"), ("max-silent-time", "0")] {
            write_u64(&mut b, 1).unwrap();
            write_bytes(&mut b, k.as_bytes()).unwrap();
            write_bytes(&mut b, v.as_bytes()).unwrap();
        }
        write_u64(&mut b, 0).unwrap();
        b.extend(offer_bytes("try"));
        b.extend(offer_bytes("try"));
        let mut r = b.as_slice();
        let s = read_settings(&mut r).unwrap();
        assert_eq!(s[0], ("store".into(), "auto".into()));
        assert_eq!(s.len(), 2);
        for _ in 0..2 {
            let HookRequest::Try(o) = read_request(&mut r).unwrap() else {
                panic!("expected try")
            };
            assert!(o.am_willing);
            assert_eq!(o.system, "x86_64-linux");
            assert_eq!(o.drv_path, "/nix/store/aaaa-foo.drv");
            assert_eq!(o.required_features, ["kvm", "big-parallel"]);
        }
        assert_eq!(read_request(&mut r).unwrap(), HookRequest::Eof);
    }

    #[test]
    fn writers_roundtrip() {
        let offer = Offer {
            am_willing: false,
            system: "aarch64-linux".into(),
            drv_path: "/nix/store/x.drv".into(),
            required_features: vec!["nsh".into()],
        };
        let mut b = Vec::new();
        write_settings(&mut b, &[("a", "1")]).unwrap();
        write_offer(&mut b, &offer).unwrap();
        write_inputs_and_outputs(&mut b, &["/nix/store/i"], &["out"]).unwrap();
        let mut r = b.as_slice();
        assert_eq!(read_settings(&mut r).unwrap(), [("a".into(), "1".into())]);
        assert_eq!(read_request(&mut r).unwrap(), HookRequest::Try(offer));
        let (i, o) = read_inputs_and_outputs(&mut r).unwrap();
        assert_eq!(
            (i, o),
            (vec!["/nix/store/i".to_owned()], vec!["out".to_owned()])
        );
        assert!(r.is_empty());
    }

    #[test]
    fn other_word_is_eof() {
        let b = offer_bytes("bye");
        assert_eq!(read_request(&mut b.as_slice()).unwrap(), HookRequest::Eof);
    }

    #[test]
    fn truncated_offer_is_error() {
        let b = offer_bytes("try");
        for cut in 1..b.len() {
            assert!(read_request(&mut &b[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn bad_settings_tag() {
        let mut b = Vec::new();
        write_u64(&mut b, 2).unwrap();
        assert!(matches!(
            read_settings(&mut b.as_slice()),
            Err(HookError::BadSettingsTag { tag: 2 })
        ));
    }

    #[test]
    fn oversized_setting_value() {
        let mut b = Vec::new();
        write_u64(&mut b, 1).unwrap();
        write_bytes(&mut b, b"x").unwrap();
        write_u64(&mut b, MAX_SETTING_VALUE + 1).unwrap();
        assert!(read_settings(&mut b.as_slice()).is_err());
    }

    #[test]
    fn inputs_and_outputs() {
        let mut b = Vec::new();
        write_string_list(&mut b, &["/nix/store/a-x", "/nix/store/b-y"]).unwrap();
        write_string_list(&mut b, &["out", "dev"]).unwrap();
        let (i, o) = read_inputs_and_outputs(&mut b.as_slice()).unwrap();
        assert_eq!(i, ["/nix/store/a-x", "/nix/store/b-y"]);
        assert_eq!(o, ["out", "dev"]);
    }

    #[test]
    fn reply_lines() {
        assert_eq!(
            Reply::Accept {
                machine: "slurm-42".into()
            }
            .to_line(),
            "# accept\nslurm-42\n"
        );
        assert_eq!(Reply::Decline.to_line(), "# decline\n");
        assert_eq!(
            Reply::DeclinePermanently.to_line(),
            "# decline-permanently\n"
        );
        assert_eq!(Reply::Postpone.to_line(), "# postpone\n");
    }
}
