//! The SQLite store (the embedded default): the conformance suite, the fleet scenarios, and
//! replicas as separate processes sharing one file.

mod common;

use common::harness::SqlHarness;

mod conformance {
    kigo_testkit::store_conformance_tests!(async { super::SqlHarness::sqlite().await });
}
