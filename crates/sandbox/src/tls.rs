//! HTTPS for the sandbox (`--tls-cert PATH`). Microsoft's azure-ai-ml SDK refuses to send a
//! bearer token over plain http for some of its calls (azure-core's `_enforce_https`), so the
//! sandbox can serve TLS with a self-signed certificate generated at start. The certificate
//! (PEM) is written to PATH; clients trust it with e.g. `REQUESTS_CA_BUNDLE=PATH`.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{self, pki_types::PrivateKeyDer, pki_types::PrivatePkcs8KeyDer};

use super::error::SandboxError;

/// The acceptor that serves a generated certificate.
#[derive(Clone)]
pub struct TlsIdentity {
    pub acceptor: TlsAcceptor,
}

/// The names the certificate is valid for: `localhost`, `127.0.0.1`, and the listen address
/// when it is a specific IP.
fn subject_names(listen: IpAddr) -> Vec<String> {
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    if !listen.is_unspecified() && listen != IpAddr::V4(Ipv4Addr::LOCALHOST) {
        names.push(listen.to_string());
    }
    names
}

fn tls_error(what: &str, e: impl std::fmt::Display) -> SandboxError {
    SandboxError::Config(format!("cannot set up TLS: {what}: {e}"))
}

/// Generates a self-signed certificate for `listen` and writes its PEM to `cert_path`.
pub fn self_signed(listen: IpAddr, cert_path: &Path) -> Result<TlsIdentity, SandboxError> {
    let certified = rcgen::generate_simple_self_signed(subject_names(listen))
        .map_err(|e| tls_error("generating a certificate", e))?;
    let cert_pem = certified.cert.pem();
    std::fs::write(cert_path, &cert_pem).map_err(|e| {
        tls_error(
            &format!("writing the certificate to {}", cert_path.display()),
            e,
        )
    })?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error("protocol versions", e))?
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .map_err(|e| tls_error("loading the certificate", e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsIdentity {
        acceptor: TlsAcceptor::from(Arc::new(config)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_certificate_names_loopback_and_a_specific_listen_address() {
        let loopback = subject_names(IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(loopback, ["localhost", "127.0.0.1"]);
        let any = subject_names(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        assert_eq!(any, ["localhost", "127.0.0.1"]);
        let lan = subject_names("10.1.2.3".parse().unwrap());
        assert_eq!(lan, ["localhost", "127.0.0.1", "10.1.2.3"]);
    }

    #[test]
    fn the_certificate_pem_is_written_where_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sandbox.pem");
        self_signed(IpAddr::V4(Ipv4Addr::LOCALHOST), &path).unwrap();
        let written = std::fs::read_to_string(&path).unwrap();
        assert!(written.starts_with("-----BEGIN CERTIFICATE-----"));
        let missing = dir.path().join("no/such/dir/cert.pem");
        let err = self_signed(IpAddr::V4(Ipv4Addr::LOCALHOST), &missing)
            .err()
            .unwrap();
        assert!(err.to_string().contains("no/such/dir"), "{err}");
    }
}
