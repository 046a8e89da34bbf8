//! rustls needs a process-wide crypto provider when more than one (or none) is compiled in.

/// Installs ring's provider unless the application installed one.
pub(crate) fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Another thread may install one first; either way there is one afterwards.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}
