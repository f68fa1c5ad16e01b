//! TLS to slurmrestd: the CA bundle of `slurm-api-ca-file`, and which hosts are this machine
//! (where a token over plain HTTP does not cross the network).

use std::path::Path;

/// Reads a PEM CA bundle: every `CERTIFICATE` block, each checked to be usable as a trust
/// anchor. The error says what is wrong with the file (missing, unreadable, no certificate,
/// a broken one), for [`ConfigError::CaFile`] and for the HTTP client.
pub fn read_ca_file(
    path: &Path,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let bytes = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "the file does not exist".to_string(),
        std::io::ErrorKind::PermissionDenied => {
            "the file cannot be read (permission denied for this user)".to_string()
        }
        _ => format!("the file cannot be read ({e})"),
    })?;
    let mut certs = Vec::new();
    for (index, item) in CertificateDer::pem_slice_iter(&bytes).enumerate() {
        let cert = item.map_err(|e| format!("certificate {} is not valid PEM ({e})", index + 1))?;
        let mut store = rustls::RootCertStore::empty();
        store.add(cert.clone()).map_err(|e| {
            format!(
                "certificate {} is not a usable X.509 CA certificate ({e})",
                index + 1
            )
        })?;
        certs.push(cert);
    }
    if certs.is_empty() {
        return Err(
            "the file holds no certificate (no '-----BEGIN CERTIFICATE-----' block)".into(),
        );
    }
    Ok(certs)
}

/// Whether `host` (a `slurm-api-host` value) is this machine: `localhost`, 127.0.0.0/8 or
/// `::1` (also bracketed, or IPv4-mapped). Any other name may resolve anywhere.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_end_matches('.');
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    match bare.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(v4)) => v4.is_loopback(),
        Ok(std::net::IpAddr::V6(v6)) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Err(_) => false,
    }
}
