//! The store over TLS (`rediss://`), against a private `redis-server` with a test CA.

use std::time::Duration;

use kigo_core::TokenStore;
use kigo_core::store::CommitOutcome;
use kigo_store_redis::RedisStore;
use kigo_store_redis::redis::{Client, TlsCertificates};
use kigo_test_services::free_port;
use kigo_test_services::redis::start_local_redis_with;
use kigo_testkit::conformance::{fresh_key, test_keyring};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

use super::support::{acquire, token_valid_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_works_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server_cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();
    std::fs::write(path("ca.pem"), ca.pem()).unwrap();
    std::fs::write(path("server.pem"), server_cert.pem()).unwrap();
    std::fs::write(path("server.key"), server_key.serialize_pem()).unwrap();

    // The TLS port is chosen with each start attempt, like the plain one.
    let mut tls_port = 0;
    let _server = start_local_redis_with(|| {
        tls_port = free_port()?;
        Ok([
            "--tls-port",
            &tls_port.to_string(),
            "--tls-cert-file",
            &path("server.pem"),
            "--tls-key-file",
            &path("server.key"),
            "--tls-ca-cert-file",
            &path("ca.pem"),
            "--tls-auth-clients",
            "no",
        ]
        .map(str::to_owned)
        .to_vec())
    })
    .await
    .unwrap();

    let client = Client::build_with_tls(
        format!("rediss://127.0.0.1:{tls_port}"),
        TlsCertificates {
            client_tls: None,
            root_cert: Some(ca.pem().into_bytes()),
        },
    )
    .unwrap();
    let keyring = test_keyring();
    let store = RedisStore::builder()
        .client(client)
        .keyring(keyring.clone())
        .build()
        .unwrap();
    let key = fresh_key();
    let lease = acquire(&store, &key, Duration::from_secs(30)).await;
    let token = token_valid_for("over-tls", Duration::from_secs(1800));
    assert_eq!(
        store.commit(&lease, &token).await.unwrap(),
        CommitOutcome::Committed
    );
    let loaded = store.load(&key).await.unwrap();
    assert_eq!(loaded.token().unwrap().fingerprint(), token.fingerprint());

    // Without the CA the server is not trusted: the store reports it unavailable.
    let untrusted = RedisStore::builder()
        .url(format!("rediss://127.0.0.1:{tls_port}"))
        .keyring(keyring)
        .build()
        .unwrap();
    assert!(untrusted.load(&key).await.is_err());
}
