//! The memory store passes the store conformance suite, and the admin one.

kigo_testkit::store_conformance_tests!(async { kigo_testkit::conformance::MemoryHarness::new() });

mod admin {
    kigo_testkit::admin_conformance_tests!(async {
        kigo_testkit::conformance::MemoryHarness::new()
    });
}
