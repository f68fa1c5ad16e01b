//! The link to slurmrestd: plain HTTP or verified HTTPS ([`Transport`]), the one HTTP
//! client that makes every request, and what a TLS failure means for the user.

use std::path::PathBuf;
use std::time::Duration;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How nsh reaches slurmrestd (`slurm-api-scheme`, `slurm-api-ca-file`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    Http,
    /// Verified TLS: against the PEM bundle `ca_file` only, or else the roots built into
    /// nsh (Mozilla's, from the webpki-roots crate).
    Https {
        ca_file: Option<PathBuf>,
    },
}

impl Transport {
    pub(super) fn scheme(&self) -> &'static str {
        match self {
            Transport::Http => "http",
            Transport::Https { .. } => "https",
        }
    }

    /// For the negotiation cache key: an http probe is never reused for https, nor one
    /// made with one CA for another.
    pub(super) fn cache_tag(&self) -> String {
        match self {
            Transport::Http => "http".into(),
            Transport::Https { ca_file: None } => "https_builtin".into(),
            Transport::Https {
                ca_file: Some(path),
            } => {
                let hash = blake3::hash(path.as_os_str().as_encoded_bytes());
                format!("https_ca{}", &hash.to_hex()[..16])
            }
        }
    }

    /// Which CAs verify the server, for messages.
    pub fn trust(&self) -> Option<String> {
        match self {
            Transport::Http => None,
            Transport::Https { ca_file: None } => {
                Some("the built-in (Mozilla) root CAs; slurm-api-ca-file is not set".into())
            }
            Transport::Https {
                ca_file: Some(path),
            } => Some(format!("slurm-api-ca-file {}", path.display())),
        }
    }
}

/// The HTTP client for `transport`: timeouts, no proxy, no redirects, and for HTTPS only
/// HTTPS with the configured CAs.
pub(super) fn http_client(transport: &Transport) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .no_proxy()
        // No idle keep-alive: an open connection must hold a permit (permits.rs).
        .pool_max_idle_per_host(0)
        // slurmrestd never redirects; following one would carry the token elsewhere.
        .redirect(reqwest::redirect::Policy::none());
    if let Transport::Https { ca_file } = transport {
        builder = builder.https_only(true);
        if let Some(path) = ca_file {
            let certs = crate::config::read_ca_file(path).map_err(|problem| {
                anyhow::anyhow!("slurm-api-ca-file = {}: {problem}", path.display())
            })?;
            builder = builder.tls_built_in_root_certs(false);
            for cert in certs {
                let cert = reqwest::Certificate::from_der(&cert)
                    .map_err(|e| anyhow::anyhow!("slurm-api-ca-file = {}: {e}", path.display()))?;
                builder = builder.add_root_certificate(cert);
            }
        }
    }
    builder
        .build()
        .map_err(|e| anyhow::anyhow!("cannot set up the HTTP client: {e}"))
}

/// The rustls error somewhere in `err`'s source chain. reqwest 0.12 nests it as
/// `io::Error(Other, io::Error(InvalidData, rustls::Error))`, and `io::Error::source()` skips
/// the error it wraps, so step into those with `get_ref()` instead.
pub(super) fn rustls_error<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a rustls::Error> {
    let mut next = Some(err);
    // Chains are a handful of links deep; the bound only guards against a cycle.
    for _ in 0..32 {
        let e = next?;
        if let Some(found) = e.downcast_ref::<rustls::Error>() {
            return Some(found);
        }
        next = match e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}

/// What failed and what to check, for a TLS error from rustls talking to `host`.
pub(super) fn tls_problem(
    err: &rustls::Error,
    host: &str,
    transport: &Transport,
) -> (String, String) {
    use rustls::CertificateError as C;
    let ca = match transport {
        Transport::Https {
            ca_file: Some(path),
        } => format!("slurm-api-ca-file ({})", path.display()),
        _ => "slurm-api-ca-file (not set: only the built-in root CAs are trusted)".into(),
    };
    let rustls::Error::InvalidCertificate(cert) = err else {
        return (
            format!("the TLS handshake with host {host} failed: {err}"),
            "check that slurm-api-port is the TLS port (slurm-api-scheme = https needs a TLS \
             proxy in front of slurmrestd) and that the proxy accepts TLS 1.2 or 1.3"
                .into(),
        );
    };
    // Verification happens inside the handshake, before any request byte: nothing, and so
    // no token, went over this connection.
    let problem = format!("TLS verification failed for host {host}: {err}; the token was not sent");
    let check = match cert {
        C::NotValidForName | C::NotValidForNameContext { .. } => format!(
            "check that the server certificate's names (subjectAltName) include '{host}', \
             exactly as slurm-api-host says it"
        ),
        C::Expired | C::ExpiredContext { .. } | C::NotValidYet | C::NotValidYetContext { .. } => {
            "check the server certificate's validity dates and this machine's clock".into()
        }
        C::UnknownIssuer | C::BadSignature => {
            format!("check that {ca} holds the CA that signed the server's certificate")
        }
        _ => format!("check {ca} and the server certificate (its names must include '{host}')"),
    };
    (problem, check)
}
