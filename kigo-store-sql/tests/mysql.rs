//! The MySQL/MariaDB store: the conformance suite and the fleet scenarios.

mod common;

use common::harness::SqlHarness;

mod conformance {
    kigo_testkit::store_conformance_tests!(async { super::SqlHarness::mysql().await });
}
