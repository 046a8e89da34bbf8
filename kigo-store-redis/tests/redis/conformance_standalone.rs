//! The store conformance suite on a standalone Redis server.

use super::support::RedisHarness;

kigo_testkit::store_conformance_tests!(RedisHarness::standalone());
