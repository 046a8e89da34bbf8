//! The PostgreSQL store: the conformance suite, the fleet scenarios, and the faults only a
//! server can have (connections killed, the server stopped, notifications lost).

mod common;

use common::harness::SqlHarness;

mod conformance {
    kigo_testkit::store_conformance_tests!(async { super::SqlHarness::postgres().await });
}
