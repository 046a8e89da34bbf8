//! The MySQL/MariaDB store: the conformance suite and the fleet scenarios.

mod common;
#[path = "common/servers.rs"]
mod servers;

use common::harness::SqlHarness;
use kigo_store_sql::BackendKind;

mod conformance {
    kigo_testkit::store_conformance_tests!(async {
        super::SqlHarness::new(super::BackendKind::MySql).await
    });
}

mod fleet {
    crate::common::fleet::fleet_tests!(kigo_store_sql::BackendKind::MySql);
}

/// A server that is not there is reported as unavailable, within the acquire timeout.
#[tokio::test]
async fn unreachable_server_is_unavailable() {
    servers::unreachable_database_is_unavailable("mysql://root@127.0.0.1").await;
}

/// The private MariaDB server is killed during traffic and restarted (see
/// [`servers::killed_and_restarted_during_traffic`]).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn server_killed_and_restarted_during_traffic() {
    let server = kigo_testkit::services::mysql::private_server()
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    servers::killed_and_restarted_during_traffic(server).await;
}
