//! [`ConfigError`], and how values and lines are quoted in it without leaking the token.

use super::loader::MAX_INCLUDE_DEPTH;

/// Longest excerpt of a value quoted in an error message, in characters.
const MAX_EXCERPT: usize = 60;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("nsh.conf: cannot read {path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "nsh.conf: {at}: included file {path} not found (use '!include' to skip a missing file)"
    )]
    IncludeNotFound { at: String, path: String },
    #[error(
        "nsh.conf: {at}: includes nest more than {MAX_INCLUDE_DEPTH} deep at {path} (is there an include cycle?)"
    )]
    IncludeTooDeep { at: String, path: String },
    #[error("nsh.conf: {at}: {problem}")]
    Syntax { at: String, problem: String },
    #[error("nsh.conf: {at}: unknown setting '{key}'{hint}")]
    UnknownSetting {
        at: String,
        key: String,
        /// ` (did you mean '…'?)` or empty.
        hint: String,
    },
    #[error(
        "nsh.conf: {at}: '{key}' cannot take the 'extra-' prefix; only list settings can ({lists})"
    )]
    NotAppendable {
        at: String,
        key: String,
        /// The list settings, comma-separated (from the definition list).
        lists: String,
    },
    /// `value` is already quoted and cut to a short excerpt, or `<redacted>` for the token.
    #[error("nsh.conf: {at}: bad value {value} for '{key}': expected {expected}")]
    BadValue {
        at: String,
        key: String,
        value: String,
        expected: String,
    },
    #[error("nsh.conf: '{key}' is required when job-scheduler = {scheduler}; {hint} ({files})")]
    Missing {
        key: String,
        /// The scheduler and where it was chosen, e.g. `slurm (the default)`.
        scheduler: String,
        hint: String,
        /// Which files were read (or looked for, if none was found).
        files: String,
    },
    /// A setting the chosen scheduler has no use for, where ignoring it would surprise.
    #[error("nsh.conf: {at}: {key} is set but job-scheduler = {scheduler} does not use it: {why}")]
    NotUsed {
        at: String,
        key: String,
        /// The scheduler and where it was chosen, as in [`ConfigError::Missing`].
        scheduler: String,
        why: String,
    },
    /// Two settings that only make sense together, or not at all together.
    #[error("nsh.conf: {at}: {problem}")]
    Conflict { at: String, problem: String },
    #[error("nsh.conf: bad value for '{key}': expected {expected}")]
    Invalid { key: String, expected: String },
    /// `slurm-api-ca-file` names a file that cannot serve as the CA bundle.
    #[error(
        "nsh.conf: {at}: slurm-api-ca-file = {path}: {problem}; set it to a PEM file holding the \
         CA certificate(s) that signed slurmrestd's (or its TLS proxy's) certificate"
    )]
    CaFile {
        at: String,
        path: String,
        problem: String,
    },
    /// A CA file with plain HTTP: the user meant TLS, so refuse rather than send the token
    /// in clear text while they believe it is protected.
    #[error(
        "nsh.conf: {at}: slurm-api-ca-file is set but slurm-api-scheme is http ({scheme_at}), \
         so the CA would never be used and the token would cross the network unencrypted; \
         set slurm-api-scheme = https, or remove slurm-api-ca-file"
    )]
    CaFileWithoutTls { at: String, scheme_at: String },
}

/// `'value'`, cut to [`MAX_EXCERPT`] characters, control characters shown as `?`.
pub(super) fn excerpt(value: &str) -> String {
    let clean = |ch: char| if ch.is_control() { '?' } else { ch };
    if value.chars().count() <= MAX_EXCERPT {
        format!("'{}'", value.chars().map(clean).collect::<String>())
    } else {
        let cut: String = value.chars().take(MAX_EXCERPT - 3).map(clean).collect();
        format!("'{cut}...'")
    }
}

/// True if a line might hold the JWT, so it must not be echoed.
fn may_hold_secret(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    lower.contains("jwt") || lower.contains("token") || text.contains("eyJ")
}

/// A malformed line for an error message, without risking the token.
pub(super) fn describe_line(line: &str) -> String {
    let line = line.trim_matches([' ', '\t', '\r']);
    if !may_hold_secret(line) {
        return excerpt(line);
    }
    let key = line.split(['=', ' ', '\t']).next().unwrap_or_default();
    if key.is_empty() || key.contains("eyJ") {
        "a line that is not shown because it may hold a secret".into()
    } else {
        format!(
            "a line starting with {} (the rest is not shown because it may hold a secret)",
            excerpt(key)
        )
    }
}

/// An unknown key for an error message: cut short, and hidden if it looks like a JWT.
pub(super) fn show_key(key: &str) -> String {
    if key.contains("eyJ") {
        super::REDACTED.into()
    } else {
        let quoted = excerpt(key);
        quoted
            .get(1..quoted.len() - 1)
            .unwrap_or_default()
            .to_owned()
    }
}
