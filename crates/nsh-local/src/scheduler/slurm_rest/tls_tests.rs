//! HTTPS to slurmrestd against an in-process TLS server on loopback, with the test
//! certificates in `testdata/` (see its README): verification by the configured CA only,
//! host-name checks, the error for each failure, no request (so no token) on a connection
//! that failed verification, and a negotiation cache that never crosses schemes or CAs.

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;

use super::{Error, SlurmRest, Transport};
use crate::scheduler::Scheduler as _;

fn testdata(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("src/scheduler/slurm_rest/testdata")
        .join(name)
}

fn token() -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = b64.encode(br#"{"exp":1795904789,"iat":1795818389,"sun":"alice"}"#);
    format!("{header}.{payload}.dGxzLXRlc3Qtc2lnbmF0dXJl")
}

fn https(ca: &str) -> Transport {
    Transport::Https {
        ca_file: Some(testdata(ca)),
    }
}

/// What one connection brought: the request head if the handshake and the read succeeded,
/// else the server-side error.
type Seen = Arc<Mutex<Vec<Result<String, String>>>>;

/// A TLS server on `ip` that answers every request with a v0.0.45 OpenAPI document.
/// Serves at most 16 connections, then stops (tests need a few).
struct TlsServer {
    port: u16,
    seen: Seen,
}

impl TlsServer {
    fn start(ip: &str) -> TlsServer {
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(testdata("server.pem"))
                .unwrap()
                .map(Result::unwrap)
                .collect();
        let key = PrivateKeyDer::from_pem_file(testdata("server.key")).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        let config = Arc::new(config);
        let listener = TcpListener::bind((ip, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen: Seen = Arc::default();
        let log = seen.clone();
        let mut paths = serde_json::Map::new();
        for p in ["job/submit", "job/{job_id}/", "jobs/", "jobs/state/"] {
            paths.insert(format!("/slurm/v0.0.45/{p}"), json!({}));
        }
        let doc = json!({"openapi": "3.0.2", "paths": paths}).to_string();
        std::thread::spawn(move || {
            for stream in listener.incoming().take(16) {
                let Ok(tcp) = stream else { continue };
                let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
                let conn = rustls::ServerConnection::new(config.clone()).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let head = loop {
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break Ok(String::from_utf8_lossy(&buf[..i]).into_owned());
                    }
                    match tls.read(&mut chunk) {
                        Ok(0) => break Err(format!("closed after {} bytes", buf.len())),
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        Err(e) => break Err(format!("{e} after {} bytes", buf.len())),
                    }
                };
                if head.is_ok() {
                    let response = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{doc}",
                        doc.len()
                    );
                    let _ = tls.write_all(response.as_bytes());
                    tls.conn.send_close_notify();
                    let _ = tls.flush();
                }
                log.lock().unwrap().push(head);
            }
        });
        TlsServer { port, seen }
    }

    fn seen(&self) -> Vec<Result<String, String>> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits (at most 5 s) until the server has dealt with `n` connections.
    fn wait_for(&self, n: usize) -> Vec<Result<String, String>> {
        for _ in 0..50 {
            if self.seen().len() >= n {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.seen()
    }
}

async fn connect(
    host: &str,
    port: u16,
    transport: &Transport,
    cache: Option<&std::path::Path>,
) -> anyhow::Result<SlurmRest> {
    SlurmRest::connect_cached(host, port, transport, &token(), None, cache).await
}

fn tls_error(err: &anyhow::Error) -> (String, &Error) {
    let text = format!("{err:#}");
    let inner = err.downcast_ref::<Error>().expect("a slurm_rest::Error");
    assert!(
        matches!(inner, Error::Tls { .. }),
        "not a TLS error: {text}"
    );
    assert!(!inner.is_transient(), "{text}");
    (text, inner)
}

#[tokio::test]
async fn https_with_the_right_ca_negotiates_and_sends_the_token_encrypted() {
    let server = TlsServer::start("127.0.0.1");
    let rest = connect("127.0.0.1", server.port, &https("ca.pem"), None)
        .await
        .unwrap();
    assert_eq!(rest.version().to_string(), "v0.0.45");
    assert!(
        rest.describe()
            .starts_with(&format!("slurmrestd at https://127.0.0.1:{}", server.port)),
        "{}",
        rest.describe()
    );
    let seen = server.wait_for(1);
    let head = seen[0].as_ref().unwrap();
    assert!(head.starts_with("GET /openapi/v3 "), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("x-slurm-user-token: "),
        "{head}"
    );
    // The same server under its DNS name.
    connect("localhost", server.port, &https("ca.pem"), None)
        .await
        .unwrap();
}

#[tokio::test]
async fn wrong_ca_fails_fast_names_the_host_and_sends_nothing() {
    let server = TlsServer::start("127.0.0.1");
    let start = Instant::now();
    let err = connect("127.0.0.1", server.port, &https("wrong-ca.pem"), None)
        .await
        .unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(5));
    let (text, _) = tls_error(&err);
    for part in [
        "TLS verification failed for host 127.0.0.1",
        "the token was not sent",
        "slurm-api-ca-file (",
        "wrong-ca.pem",
        &format!("https://127.0.0.1:{}", server.port),
        "reading the OpenAPI document",
    ] {
        assert!(text.contains(part), "lacks {part:?}: {text}");
    }
    assert!(!text.contains(&token()), "{text}");
    // One connection, no request on it: the handshake failed before any HTTP byte.
    let seen = server.wait_for(1);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].is_err(), "{seen:?}");
}

#[tokio::test]
async fn built_in_roots_do_not_trust_a_private_ca() {
    let server = TlsServer::start("127.0.0.1");
    let transport = Transport::Https { ca_file: None };
    let err = connect("127.0.0.1", server.port, &transport, None)
        .await
        .unwrap_err();
    let (text, _) = tls_error(&err);
    assert!(
        text.contains("not set: only the built-in root CAs"),
        "{text}"
    );
    assert!(server.wait_for(1).iter().all(Result::is_err));
}

#[tokio::test]
async fn a_host_name_outside_the_certificate_fails_verification() {
    // Linux routes all of 127.0.0.0/8 to lo; the certificate names 127.0.0.1 and localhost.
    let server = TlsServer::start("127.0.0.2");
    let err = connect("127.0.0.2", server.port, &https("ca.pem"), None)
        .await
        .unwrap_err();
    let (text, _) = tls_error(&err);
    assert!(
        text.contains("TLS verification failed for host 127.0.0.2"),
        "{text}"
    );
    assert!(
        text.contains("names (subjectAltName) include '127.0.0.2'"),
        "{text}"
    );
    assert!(server.wait_for(1).iter().all(Result::is_err));
}

#[tokio::test]
async fn https_to_a_plain_http_port_is_a_handshake_error_not_unreachable() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        if let Some(Ok(mut tcp)) = listener.incoming().next() {
            let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = tcp.read(&mut [0u8; 1024]);
            let _ = tcp.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        }
    });
    let err = connect("127.0.0.1", port, &https("ca.pem"), None)
        .await
        .unwrap_err();
    let (text, _) = tls_error(&err);
    assert!(
        text.contains("TLS handshake with host 127.0.0.1 failed"),
        "{text}"
    );
    assert!(text.contains("slurm-api-port is the TLS port"), "{text}");
}

#[tokio::test]
async fn the_negotiation_cache_is_per_scheme_and_ca() {
    let server = TlsServer::start("127.0.0.1");
    let dir = tempfile::tempdir().unwrap();
    connect("127.0.0.1", server.port, &https("ca.pem"), Some(dir.path()))
        .await
        .unwrap();
    // Reused for the same transport: no new connection.
    connect("127.0.0.1", server.port, &https("ca.pem"), Some(dir.path()))
        .await
        .unwrap();
    assert_eq!(server.wait_for(1).len(), 1);
    // Plain HTTP must probe for itself (and fails against a TLS port) ...
    let err = connect("127.0.0.1", server.port, &Transport::Http, Some(dir.path())).await;
    assert!(err.is_err(), "an https negotiation was reused for http");
    // ... and so must another CA.
    let err = connect(
        "127.0.0.1",
        server.port,
        &https("wrong-ca.pem"),
        Some(dir.path()),
    )
    .await
    .unwrap_err();
    tls_error(&err);
}

#[test]
fn a_ca_file_that_cannot_be_used_is_refused_before_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let key_only = dir.path().join("key.pem");
    std::fs::copy(testdata("server.key"), &key_only).unwrap();
    let broken = dir.path().join("broken.pem");
    std::fs::write(
        &broken,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    for (path, want) in [
        (dir.path().join("missing.pem"), "does not exist"),
        (empty, "holds no certificate"),
        (key_only, "holds no certificate"),
        (broken, "certificate 1 is not a usable X.509 CA certificate"),
    ] {
        let transport = Transport::Https {
            ca_file: Some(path.clone()),
        };
        let err = super::http_client(&transport).unwrap_err().to_string();
        assert!(
            err.contains("slurm-api-ca-file = ") && err.contains(want),
            "{err}"
        );
        assert!(err.contains(&path.display().to_string()), "{err}");
    }
    assert_eq!(
        crate::config::read_ca_file(&testdata("ca.pem"))
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn redirects_are_not_followed_so_the_token_stays_put() {
    // Where a redirect points: any connection here would carry the token.
    let elsewhere = TcpListener::bind("127.0.0.1:0").unwrap();
    let elsewhere_port = elsewhere.local_addr().unwrap().port();
    elsewhere.set_nonblocking(true).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        // The probe asks for three documents, one connection each.
        for stream in listener.incoming().take(3) {
            let Ok(mut tcp) = stream else { continue };
            let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = tcp.read(&mut [0u8; 4096]);
            let reply = format!(
                "HTTP/1.1 301 Moved\r\nLocation: http://127.0.0.1:{elsewhere_port}/x\r\n\
                 Content-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let _ = tcp.write_all(reply.as_bytes());
        }
    });
    let err = connect("127.0.0.1", port, &Transport::Http, None)
        .await
        .unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("HTTP 301"), "{text}");
    assert!(text.contains("follows no redirect"), "{text}");
    assert!(elsewhere.accept().is_err(), "the redirect was followed");
}
