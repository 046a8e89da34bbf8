//! The store and admin conformance suites on a standalone Redis server.

use super::support::RedisHarness;

kigo_testkit::store_conformance_tests!(RedisHarness::standalone());

/// What an operator's tool relies on.
mod admin {
    use super::RedisHarness;

    kigo_testkit::admin_conformance_tests!(RedisHarness::standalone());
}
