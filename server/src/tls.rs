//! Client TLS with rustls, configured by Redis's option names: `tls-port`, `tls-cert-file`,
//! `tls-key-file`, `tls-ca-cert-file`, `tls-auth-clients` (`yes`: a client certificate
//! signed by the CA is required, `optional`: checked when given, `no`) and `tls-protocols`
//! (`"TLSv1.2 TLSv1.3"`). See docs/SECURITY.md.

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig as RustlsConfig};
use tokio_rustls::TlsAcceptor;

use crate::config::ServerConfig;

/// Builds the acceptor the configuration asks for; `None` without `tls_port`.
pub fn acceptor(config: &ServerConfig) -> Result<Option<TlsAcceptor>, String> {
    if config.tls_port == 0 {
        return Ok(None);
    }
    let certs = read_certs(&config.tls_cert_file, "tls-cert-file")?;
    let key = PrivateKeyDer::from_pem_file(&config.tls_key_file)
        .map_err(|error| format!("tls-key-file {}: {error}", config.tls_key_file.display()))?;
    let versions = protocol_versions(&config.tls_protocols)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = RustlsConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|error| format!("tls-protocols: {error}"))?;
    let auth = config.tls_auth_clients.to_ascii_lowercase();
    let builder = match auth.as_str() {
        "no" => builder.with_no_client_auth(),
        "yes" | "optional" => {
            if config.tls_ca_cert_file.as_os_str().is_empty() {
                return Err(format!(
                    "tls-auth-clients {auth} needs tls-ca-cert-file (the CA that signs client \
                     certificates); set tls-auth-clients no to accept clients without one"
                ));
            }
            let mut roots = RootCertStore::empty();
            for cert in read_certs(&config.tls_ca_cert_file, "tls-ca-cert-file")? {
                roots
                    .add(cert)
                    .map_err(|error| format!("tls-ca-cert-file: {error}"))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if auth == "optional" {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier
                .build()
                .map_err(|error| format!("tls-ca-cert-file: {error}"))?;
            builder.with_client_cert_verifier(verifier)
        }
        other => {
            return Err(format!(
                "tls-auth-clients must be yes, no or optional, got {other}"
            ))
        }
    };
    let mut tls = builder
        .with_single_cert(certs, key)
        .map_err(|error| format!("tls-cert-file / tls-key-file: {error}"))?;
    tls.alpn_protocols.clear();
    Ok(Some(TlsAcceptor::from(Arc::new(tls))))
}

fn read_certs(path: &Path, option: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    if path.as_os_str().is_empty() {
        return Err(format!("{option} must be set when tls-port is"));
    }
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|error| format!("{option} {}: {error}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{option} {}: no certificate in it", path.display()));
    }
    Ok(certs)
}

/// Redis's `tls-protocols`: `TLSv1.2`, `TLSv1.3` or both, space-separated.
fn protocol_versions(text: &str) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, String> {
    let mut versions = Vec::new();
    for word in text.split_whitespace() {
        let version = match word.to_ascii_lowercase().as_str() {
            "tlsv1.2" => &rustls::version::TLS12,
            "tlsv1.3" => &rustls::version::TLS13,
            _ => {
                return Err(format!(
                    "tls-protocols: {word} is not supported (TLSv1.2 and TLSv1.3 are)"
                ))
            }
        };
        versions.push(version);
    }
    if versions.is_empty() {
        return Err("tls-protocols names no protocol".into());
    }
    Ok(versions)
}
