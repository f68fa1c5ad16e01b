//! Value parsers shared by the setting definitions. Each takes the value as written (the
//! words joined by single spaces) and returns it parsed, or what was expected instead (the
//! `expected …` of [`super::ConfigError::BadValue`]).

use crate::scheduler::job_params;
use crate::scheduler::slurm_rest::{ApiVersion, MAX_VERSION, MIN_VERSION};

use super::errors::excerpt;

/// More resubmits than this would only hide a broken cluster behind a long wait.
pub(super) const MAX_RESUBMITS_LIMIT: u32 = 20;
pub(super) const MAX_RESUBMITS_EXPECTED: &str =
    "a whole number from 0 (never resubmit) to 20, e.g. max-resubmits = 2";
pub(super) const PORT_EXPECTED: &str = "a TCP port number from 1 to 65535";
pub(super) const STORE_DIR_EXPECTED: &str =
    "an absolute path without a trailing slash, spaces, '.' or '..' components, e.g. /nix/store";

pub(super) type Parsed<T> = Result<T, String>;

pub(super) fn bool(value: &str) -> Parsed<bool> {
    match value {
        "true" | "yes" | "1" => Ok(true),
        "false" | "no" | "0" => Ok(false),
        _ => Err("true or false".into()),
    }
}

/// A whole number, with `expected` as the error.
pub(super) fn number(value: &str, expected: &str) -> Parsed<u32> {
    value.parse().map_err(|_| expected.to_owned())
}

pub(super) fn port(value: &str) -> Parsed<u16> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PORT_EXPECTED.into());
    }
    match value.parse::<u16>() {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(PORT_EXPECTED.into()),
    }
}

/// The words of a list value, in order, without duplicates.
pub(super) fn words(value: &str) -> Vec<String> {
    let mut list: Vec<String> = Vec::new();
    for word in value.split(' ').filter(|w| !w.is_empty()) {
        if !list.iter().any(|f| f == word) {
            list.push(word.into());
        }
    }
    list
}

/// `list` replaced by the words of `value`, or (with `extra-`) extended by them.
pub(super) fn set_list(list: &mut Vec<String>, value: &str, append: bool) {
    if !append {
        list.clear();
    }
    for word in words(value) {
        if !list.contains(&word) {
            list.push(word);
        }
    }
}

pub(super) fn system(value: &str) -> Parsed<String> {
    if value.is_empty() || value.contains(' ') || !value.contains('-') {
        return Err("a Nix system type such as x86_64-linux or aarch64-linux".into());
    }
    Ok(value.into())
}

/// The rules `store-dir` follows at load and in [`super::Config::validate`].
pub(super) fn is_store_dir(value: &str) -> bool {
    value.starts_with('/')
        && value.len() > 1
        && !value.contains(' ')
        && value
            .split('/')
            .skip(1)
            .all(|part| !matches!(part, "" | "." | ".."))
}

pub(super) fn store_dir(value: &str) -> Parsed<String> {
    if is_store_dir(value) {
        Ok(value.into())
    } else {
        Err(STORE_DIR_EXPECTED.into())
    }
}

/// `auto` → `None` (the remote Nix picks its store); anything else is a store URL or path.
pub(super) fn remote_store(value: &str) -> Parsed<Option<String>> {
    let relative_path = !value.contains("://") && !value.starts_with('/') && value.contains('/');
    if value.is_empty() || value.contains(' ') || relative_path || value.starts_with('~') {
        return Err(
            "a Nix store URL: auto, daemon, local, unix://…, ssh-ng://… or an absolute \
                    path such as /local/store"
                .into(),
        );
    }
    Ok((value != "auto").then(|| value.into()))
}

/// Empty → `None`; otherwise an absolute path without spaces, trailing slashes removed.
pub(super) fn optional_abs_path(value: &str, expected: &str) -> Parsed<Option<String>> {
    if value.is_empty() {
        return Ok(None);
    }
    if !value.starts_with('/') || value.contains(' ') {
        return Err(expected.into());
    }
    let trimmed = value.trim_end_matches('/');
    Ok(Some(if trimmed.is_empty() {
        "/".into()
    } else {
        trimmed.into()
    }))
}

pub(super) fn state_dir(value: &str) -> Parsed<Option<String>> {
    let expected = if value.starts_with('~') {
        "an absolute path ('~' is not expanded), e.g. /home/<user>/.nsh"
    } else {
        "an absolute path without spaces that every cluster node can see, e.g. /home/<user>/.nsh"
    };
    optional_abs_path(value, expected)
}

/// Empty → `None`; otherwise a user name as `useradd` takes it: a letter or `_`, then
/// letters, digits, `.`, `_` and `-`, at most 32 bytes (never a uid, which would bypass the
/// passwd lookup that also gives the job's group).
pub(super) fn user_name(value: &str) -> Parsed<Option<String>> {
    if value.is_empty() {
        return Ok(None);
    }
    let first_ok = value
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
    let rest_ok = value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if value.len() > 32 || !first_ok || !rest_ok {
        return Err("a user name (letters, digits, '.', '_' and '-', starting with a letter or                     '_'), e.g. job-user = alice, or nothing"
            .into());
    }
    Ok(Some(value.into()))
}

/// Empty → `None`; otherwise a host name or ssh config alias, checked as the scheduler's
/// host names are before they reach `ssh` (so `-oProxyCommand=…` cannot pass).
pub(super) fn login_host(value: &str) -> Parsed<Option<String>> {
    if value.is_empty() {
        return Ok(None);
    }
    crate::scheduler::check_host_name(value).map_err(|why| {
        format!(
            "a host name or ssh config alias to run the scheduler's commands on over SSH, \
             without 'user@' (set the user in ssh config), or nothing to run them on this \
             machine; {why}"
        )
    })?;
    Ok(Some(value.into()))
}

/// A host for an HTTP URL: no scheme, no port, no path.
pub(super) fn api_host(value: &str) -> Parsed<String> {
    let host_port = value.matches(':').count() == 1;
    if value.is_empty() || value.contains([' ', '/']) || host_port {
        return Err(
            "a host name or IP address without 'http://' or ':port' (set the port with \
                    slurm-api-port, https with slurm-api-scheme)"
                .into(),
        );
    }
    Ok(value.into())
}

pub(super) fn pbs_host(value: &str) -> Parsed<Option<String>> {
    if value.contains([' ', '/']) {
        return Err("the PBS server's host name (PBS_SERVER in pbs.conf)".into());
    }
    Ok((!value.is_empty()).then(|| value.into()))
}

/// Empty → `None` (negotiate); otherwise `v0.0.NN`, parsed by the REST client's own
/// [`ApiVersion::parse`] (so load and connect agree), one it speaks, stored canonically.
pub(super) fn api_version(value: &str) -> Parsed<Option<String>> {
    if value.is_empty() {
        return Ok(None);
    }
    let expected = || {
        format!(
            "a slurmrestd API version from {MIN_VERSION} to {MAX_VERSION} such as v0.0.42, or \
             nothing to negotiate one"
        )
    };
    // The `v` keeps one spelling in files; ApiVersion::parse also reads server paths without it.
    let version = value
        .starts_with('v')
        .then(|| ApiVersion::parse(value))
        .flatten()
        .filter(|v| v.is_supported())
        .ok_or_else(expected)?;
    Ok(Some(version.to_string()))
}

pub(super) fn jwt(value: &str) -> Parsed<Option<String>> {
    if !value.chars().all(|ch| ch.is_ascii_graphic()) {
        return Err("a single JWT without spaces or non-ASCII characters".into());
    }
    Ok((!value.is_empty()).then(|| value.into()))
}

pub(super) fn submission_params(value: &str) -> Parsed<serde_json::Map<String, serde_json::Value>> {
    let params = json_object(value)
        .map_err(|why| format!("a JSON object such as {{\"partition\": \"debug\"}} ({why})"))?;
    if let Some(key) = job_params::reserved_in(params.keys().map(String::as_str)) {
        return Err(format!(
            "a JSON object without `{key}`: nsh sets that job field itself, and its own value \
             always wins"
        ));
    }
    Ok(params)
}

/// Job parameter names a derivation may set: well-formed, none of nsh's own job fields.
pub(super) fn job_param_names(value: &str) -> Parsed<Vec<String>> {
    let words: Vec<String> = value
        .split(' ')
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect();
    if let Some(w) = words.iter().find(|w| !job_params::is_param_name(w)) {
        return Err(format!(
            "job parameter names (letters, digits, '_', '.', '-'); {} is not one",
            excerpt(w)
        ));
    }
    if let Some(key) = job_params::reserved_in(words.iter().map(String::as_str)) {
        return Err(format!(
            "job parameter names for resources and placement; `{key}` is a job field nsh sets \
             itself and no derivation may set"
        ));
    }
    Ok(words)
}

fn json_object(value: &str) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    if value.is_empty() {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_str::<serde_json::Value>(value) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(serde_json::Value::Array(_)) => Err("got a JSON array".into()),
        Ok(serde_json::Value::String(_)) => Err("got a JSON string".into()),
        Ok(serde_json::Value::Number(_)) => Err("got a JSON number".into()),
        Ok(serde_json::Value::Bool(_)) => Err("got a JSON boolean".into()),
        Ok(serde_json::Value::Null) => Err("got JSON null".into()),
        Err(e) => Err(format!("invalid JSON: {e}")),
    }
}
