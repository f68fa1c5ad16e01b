//! Nix's structured log messages: the `@nix {json}` lines of its JSON logger
//! (`--log-format internal-json`). The hook writes them to Nix (messages, its own
//! activities and their progress); the agent reads the ones `nix-store --realise` writes
//! (the build's log lines, Nix's errors). The numbers are Nix's `Verbosity`,
//! `ActivityType` and `ResultType` (`logging.hh`), stable from 2.8 to 2.34.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What starts every structured line.
pub const PREFIX: &str = "@nix ";

/// Verbosity levels (`lvlError` = 0 … `lvlVomit` = 7).
pub const LVL_ERROR: u8 = 0;
pub const LVL_WARN: u8 = 1;
pub const LVL_INFO: u8 = 3;
pub const LVL_TALKATIVE: u8 = 4;
pub const LVL_DEBUG: u8 = 6;

/// Activity types nsh reports.
pub const ACT_UNKNOWN: u64 = 0;
pub const ACT_COPY_PATH: u64 = 100;
pub const ACT_COPY_PATHS: u64 = 103;

/// Result types. A build-log line's fields are `[line]`; progress is `[done, expected,
/// running, failed]`; set-expected is `[activity type, expected]`. Nix 2.8 asserts on their
/// arity and field types.
pub const RES_BUILD_LOG_LINE: u64 = 101;
pub const RES_PROGRESS: u64 = 105;
pub const RES_SET_EXPECTED: u64 = 106;
pub const RES_POST_BUILD_LOG_LINE: u64 = 107;

/// One message. Fields Nix adds that nsh does not use are ignored when reading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum LogMessage {
    Msg {
        #[serde(default)]
        level: u8,
        #[serde(default)]
        msg: String,
    },
    Start {
        id: u64,
        level: u8,
        #[serde(rename = "type")]
        kind: u64,
        text: String,
        fields: Value,
        parent: u64,
    },
    Stop {
        id: u64,
    },
    Result {
        id: u64,
        #[serde(rename = "type")]
        kind: u64,
        fields: Value,
    },
}

/// How one line of a Nix process's stderr reads.
#[derive(Debug, PartialEq)]
pub enum Line {
    /// Not a structured message (plain output, or `@nix` followed by something that is not
    /// JSON): shown as it is.
    Plain,
    /// A structured message of a kind nsh knows.
    Message(LogMessage),
    /// Well-formed JSON of a kind nsh does not use (another action, missing fields).
    Other,
}

impl LogMessage {
    /// The whole line, prefix and newline included.
    pub fn to_line(&self) -> String {
        // A message of plain strings and numbers always serialises.
        let json = serde_json::to_string(self).unwrap_or_default();
        format!("{PREFIX}{json}\n")
    }

    /// The text of a build-log line (the builder's output), if this is one.
    pub fn build_log_text(&self) -> Option<&str> {
        match self {
            LogMessage::Result { kind, fields, .. }
                if matches!(*kind, RES_BUILD_LOG_LINE | RES_POST_BUILD_LOG_LINE) =>
            {
                Some(fields.get(0).and_then(Value::as_str).unwrap_or_default())
            }
            _ => None,
        }
    }
}

/// Reads one line (without its newline).
pub fn parse_line(line: &str) -> Line {
    let Some(json) = line.strip_prefix(PREFIX) else {
        return Line::Plain;
    };
    let Ok(value) = serde_json::from_str::<Value>(json) else {
        return Line::Plain;
    };
    match serde_json::from_value::<LogMessage>(value) {
        Ok(m) => Line::Message(m),
        Err(_) => Line::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn writes_what_nix_reads() {
        let as_json = |m: LogMessage| {
            let line = m.to_line();
            assert!(line.starts_with(PREFIX) && line.ends_with('\n'), "{line:?}");
            serde_json::from_str::<Value>(&line[PREFIX.len()..]).unwrap()
        };
        assert_eq!(
            as_json(LogMessage::Msg {
                level: LVL_WARN,
                msg: "warning: x".into()
            }),
            json!({"action": "msg", "level": 1, "msg": "warning: x"})
        );
        assert_eq!(
            as_json(LogMessage::Start {
                id: 7,
                level: LVL_TALKATIVE,
                kind: ACT_COPY_PATH,
                text: "copying".into(),
                fields: json!(["/nix/store/x", "node1", ""]),
                parent: 0,
            }),
            json!({"action": "start", "id": 7, "level": 4, "type": 100, "text": "copying",
                   "fields": ["/nix/store/x", "node1", ""], "parent": 0})
        );
        assert_eq!(
            as_json(LogMessage::Result {
                id: 7,
                kind: RES_PROGRESS,
                fields: json!([1, 2, 0, 0])
            }),
            json!({"action": "result", "id": 7, "type": 105, "fields": [1, 2, 0, 0]})
        );
        assert_eq!(
            as_json(LogMessage::Stop { id: 7 }),
            json!({"action": "stop", "id": 7})
        );
    }

    #[test]
    fn reads_what_nix_writes() {
        let msg = |l: &str| match parse_line(l) {
            Line::Message(m) => m,
            other => panic!("{l}: {other:?}"),
        };
        let log = msg(r#"@nix {"action":"result","fields":["hello world"],"id":123,"type":101}"#);
        assert_eq!(log.build_log_text(), Some("hello world"));
        let post = msg(r#"@nix {"action":"result","fields":["post"],"id":1,"type":107}"#);
        assert_eq!(post.build_log_text(), Some("post"));
        let phase = msg(r#"@nix {"action":"result","fields":["buildPhase"],"id":1,"type":104}"#);
        assert_eq!(phase.build_log_text(), None);
        assert_eq!(
            msg(r#"@nix {"action":"msg","level":0,"msg":"error: builder failed"}"#),
            LogMessage::Msg {
                level: 0,
                msg: "error: builder failed".into()
            }
        );
        // Nix's start lines carry mixed fields; a missing level reads as an error.
        msg(
            r#"@nix {"action":"start","id":1,"level":3,"parent":0,"text":"building","type":105,"fields":["/nix/store/x.drv","",1,1]}"#,
        );
        assert_eq!(
            msg(r#"@nix {"action":"msg","msg":"m"}"#),
            LogMessage::Msg {
                level: 0,
                msg: "m".into()
            }
        );
        // A result without fields has no log text rather than failing.
        let bare = msg(r#"@nix {"action":"result","id":1,"type":101,"fields":[]}"#);
        assert_eq!(bare.build_log_text(), Some(""));
    }

    #[test]
    fn tells_plain_and_unknown_lines_apart() {
        assert_eq!(parse_line("building..."), Line::Plain);
        assert_eq!(parse_line("@nix {broken"), Line::Plain);
        assert_eq!(parse_line("@nixfoo"), Line::Plain);
        assert_eq!(
            parse_line(r#"@nix {"action":"setPhase","id":1}"#),
            Line::Other
        );
        assert_eq!(
            parse_line(r#"@nix {"action":"result","id":1}"#),
            Line::Other
        );
        assert_eq!(parse_line(r#"@nix [1,2]"#), Line::Other);
    }
}
