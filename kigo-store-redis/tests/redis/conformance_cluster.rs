//! The store conformance suite on a local Redis Cluster of three masters.

use super::support::RedisHarness;

kigo_testkit::store_conformance_tests!(RedisHarness::cluster());
