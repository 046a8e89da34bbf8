//! The PostgreSQL store: the conformance suite, the fleet scenarios, and the faults only a
//! server can have (connections killed, the server stopped, notifications lost).

mod common;

use common::harness::SqlHarness;
use kigo_store_sql::BackendKind;

mod conformance {
    kigo_testkit::store_conformance_tests!(async {
        super::SqlHarness::new(super::BackendKind::Postgres).await
    });
}

mod fleet {
    crate::common::fleet::fleet_tests!(kigo_store_sql::BackendKind::Postgres);
}
