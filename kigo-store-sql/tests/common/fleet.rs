//! Fleet scenarios every backend runs.
