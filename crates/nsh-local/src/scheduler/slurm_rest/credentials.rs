//! The JWT and the headers that carry it, and its renewal: when slurmrestd rejects the
//! token, the backend asks its [`TokenSource`] (the hook: nsh.conf's sources, read again)
//! for the current `slurm-jwt-token`; if a site timer rewrote it, the request is sent once
//! more with the new one. At most once per [`RENEW_PAUSE`], so a token that stays bad costs
//! one re-read every few seconds, not one per request.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use super::Error;
use crate::config::REDACTED;

/// Shortest time between two re-reads of the token's source.
pub const RENEW_PAUSE: Duration = Duration::from_secs(3);

/// Where a running backend reads `slurm-jwt-token` again: its current text, or why it
/// could not be read (a config that no longer loads).
pub type TokenSource = Arc<dyn Fn() -> anyhow::Result<String> + Send + Sync>;

/// The JWT. Never printed: `Debug` shows [`REDACTED`].
#[derive(Clone)]
pub(super) struct Token(pub(super) String);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Token {
    /// Accepts the token alone or the `SLURM_JWT=…` line `scontrol token` prints.
    pub(super) fn parse(text: &str) -> Result<Token, Error> {
        let text = text.trim();
        let text = text.strip_prefix("SLURM_JWT=").unwrap_or(text);
        if text.is_empty() {
            return Err(Error::BadToken("it is empty"));
        }
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::BadToken(
                "it contains spaces or non-ASCII characters",
            ));
        }
        Ok(Token(text.to_owned()))
    }

    /// The `sun` (Slurm user name) claim of the payload. The signature is slurmctld's
    /// business; this only finds the name 22.05 wants in `X-SLURM-USER-NAME`.
    pub(super) fn user(&self) -> Result<Option<String>, Error> {
        let mut parts = self.0.split('.');
        let (Some(_header), Some(payload), Some(_signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Error::BadToken(
                "it is not a JWT (three base64url parts joined by `.`)",
            ));
        };
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .map_err(|_| Error::BadToken("its payload is not base64url"))?;
        let claims: Value = serde_json::from_slice(&bytes)
            .map_err(|_| Error::BadToken("its payload is not JSON"))?;
        if !claims.is_object() {
            return Err(Error::BadToken("its payload is not a JSON object"));
        }
        Ok(claims
            .get("sun")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned))
    }

    /// Replaces the token wherever a server echoed it back.
    pub(super) fn scrub(&self, text: String) -> String {
        if text.contains(&self.0) {
            text.replace(&self.0, REDACTED)
        } else {
            text
        }
    }
}

/// A parsed token with the headers that send it (`X-SLURM-USER-TOKEN`, and
/// `X-SLURM-USER-NAME` from its `sun` claim when it has one).
pub(super) struct Credentials {
    pub token: Token,
    pub user: Option<String>,
    pub headers: HeaderMap,
}

impl Credentials {
    pub fn parse(text: &str) -> Result<Credentials, Error> {
        let token = Token::parse(text)?;
        let user = token.user()?;
        let mut headers = HeaderMap::new();
        let mut secret = HeaderValue::from_str(&token.0)
            .map_err(|_| Error::BadToken("it is not a valid HTTP header value"))?;
        secret.set_sensitive(true);
        headers.insert(HeaderName::from_static("x-slurm-user-token"), secret);
        if let Some(user) = &user {
            let name = HeaderValue::from_str(user)
                .map_err(|_| Error::BadToken("its `sun` claim is not a valid HTTP header value"))?;
            headers.insert(HeaderName::from_static("x-slurm-user-name"), name);
        }
        Ok(Credentials {
            token,
            user,
            headers,
        })
    }
}

/// The token source and when it was last read.
#[derive(Default)]
pub(super) struct Renewal {
    source: Option<TokenSource>,
    last: Mutex<Option<Instant>>,
}

/// What asking the source gave.
pub(super) enum Renewed<T> {
    /// No source, or asked too recently: nothing new to try.
    NotAsked,
    /// The source holds the same token (or one that does not parse, or none).
    Unchanged,
    /// A different token: retry with it.
    New(T),
}

impl Renewal {
    pub fn new(source: Option<TokenSource>) -> Renewal {
        Renewal {
            source,
            last: Mutex::new(None),
        }
    }

    /// Reads the source again (off the async runtime: it reads files) unless that happened
    /// less than [`RENEW_PAUSE`] ago; a token different from `current` comes back parsed.
    pub async fn renew(&self, current: &Token) -> Renewed<Credentials> {
        let Some(source) = self.source.clone() else {
            return Renewed::NotAsked;
        };
        if !self.may_ask(Instant::now()) {
            return Renewed::NotAsked;
        }
        let text = match tokio::task::spawn_blocking(move || source()).await {
            Ok(Ok(text)) => text,
            Ok(Err(e)) => {
                tracing::warn!("re-reading slurm-jwt-token: {e:#}");
                return Renewed::Unchanged;
            }
            Err(_) => return Renewed::Unchanged,
        };
        match Credentials::parse(&text) {
            Ok(c) if c.token.0 != current.0 => Renewed::New(c),
            Ok(_) => Renewed::Unchanged,
            Err(e) => {
                tracing::warn!("the re-read slurm-jwt-token is unusable: {e}");
                Renewed::Unchanged
            }
        }
    }

    /// Whether the source may be read at `now`; if so, records `now` as the last time.
    fn may_ask(&self, now: Instant) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|t| now.saturating_duration_since(t) < RENEW_PAUSE) {
            return false;
        }
        *last = Some(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asks_at_most_once_per_pause() {
        let r = Renewal::new(None);
        let t0 = Instant::now();
        assert!(r.may_ask(t0));
        assert!(!r.may_ask(t0 + Duration::from_secs(1)));
        assert!(r.may_ask(t0 + RENEW_PAUSE));
        assert!(!r.may_ask(t0 + RENEW_PAUSE));
    }

    fn jwt(sun: &str, exp: u64) -> String {
        let b = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let payload = b.encode(format!(r#"{{"exp":{exp},"iat":1,"sun":"{sun}"}}"#));
        format!(
            "{}.{payload}.c2ln",
            b.encode(r#"{"alg":"HS256","typ":"JWT"}"#)
        )
    }

    #[tokio::test]
    async fn renews_only_a_changed_token() {
        let old = Token::parse(&jwt("alice", 1)).unwrap();
        let none = Renewal::new(None);
        assert!(matches!(none.renew(&old).await, Renewed::NotAsked));

        let same_text = jwt("alice", 1);
        let same = Renewal::new(Some(Arc::new(move || Ok(same_text.clone()))));
        assert!(matches!(same.renew(&old).await, Renewed::Unchanged));
        // Asked again at once: not read again.
        assert!(matches!(same.renew(&old).await, Renewed::NotAsked));

        let new_text = format!("SLURM_JWT={}\n", jwt("alice", 2));
        let new = Renewal::new(Some(Arc::new(move || Ok(new_text.clone()))));
        match new.renew(&old).await {
            Renewed::New(c) => assert_eq!(c.user.as_deref(), Some("alice")),
            _ => panic!("a changed token is not renewed"),
        }

        let broken = Renewal::new(Some(Arc::new(|| anyhow::bail!("nsh.conf: line 3: ..."))));
        assert!(matches!(broken.renew(&old).await, Renewed::Unchanged));
        let garbage = Renewal::new(Some(Arc::new(|| Ok("not a jwt".to_string()))));
        assert!(matches!(garbage.renew(&old).await, Renewed::Unchanged));
    }
}
