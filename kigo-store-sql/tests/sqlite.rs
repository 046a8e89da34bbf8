//! The SQLite store (the embedded default): the conformance suite, the fleet scenarios, and
//! replicas as separate processes sharing one file.

mod common;

use common::harness::SqlHarness;
use kigo_store_sql::BackendKind;

mod conformance {
    kigo_testkit::store_conformance_tests!(async {
        super::SqlHarness::new(super::BackendKind::Sqlite).await
    });
}

mod fleet {
    crate::common::fleet::fleet_tests!(kigo_store_sql::BackendKind::Sqlite);
}
