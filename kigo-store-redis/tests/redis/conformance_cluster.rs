//! The store and admin conformance suites on a local Redis Cluster of three masters.

use super::support::RedisHarness;

kigo_testkit::store_conformance_tests!(RedisHarness::cluster());

/// What an operator's tool relies on.
mod admin {
    use super::RedisHarness;

    kigo_testkit::admin_conformance_tests!(RedisHarness::cluster());
}
