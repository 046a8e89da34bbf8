//! The MySQL/MariaDB store: the conformance suite and the fleet scenarios.

mod common;

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
    common::fleet::unreachable_database_is_unavailable("mysql://root@127.0.0.1").await;
}
