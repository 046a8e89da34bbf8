//! HTTPS for the mock: a private certificate authority made at start, and a server certificate
//! for `127.0.0.1` and `localhost` signed by it. Tests trust the authority explicitly, so the real
//! TLS path of a client is exercised without touching the system's trust store.

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::crypto::aws_lc_rs;
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use super::MockError;

/// The authority's certificate (to trust) and the acceptor serving the signed certificate.
pub(super) struct Tls {
    pub(super) ca_pem: String,
    pub(super) acceptor: TlsAcceptor,
}

pub(super) fn generate() -> Result<Tls, MockError> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(tls_error)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().map_err(tls_error)?)
        .map_err(tls_error)?;

    let server_key = KeyPair::generate().map_err(tls_error)?;
    let server_params =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .map_err(tls_error)?;
    let server_cert = server_params
        .signed_by(&server_key, &ca)
        .map_err(tls_error)?;

    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
    let config = ServerConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?
        .with_no_client_auth()
        .with_single_cert(vec![server_cert.der().clone()], key)
        .map_err(tls_error)?;
    Ok(Tls {
        ca_pem: ca.pem(),
        acceptor: TlsAcceptor::from(Arc::new(config)),
    })
}

fn tls_error(error: impl std::error::Error + Send + Sync + 'static) -> MockError {
    MockError::Tls(Box::new(error))
}
