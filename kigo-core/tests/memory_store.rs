//! The memory store passes the store conformance suite.

kigo_testkit::store_conformance_tests!(async { kigo_testkit::conformance::MemoryHarness::new() });
