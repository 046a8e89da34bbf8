-- One row per token key: the current token, its lease and its cool-down.
-- Times are the database's (clock_timestamp()); replicas' clocks are never used for leases.
CREATE TABLE IF NOT EXISTS {table} (
    -- TokenKey::storage_id(): p/<partner> or u/<partner>/<user>, percent-encoded.
    token_key      TEXT        NOT NULL PRIMARY KEY,
    -- The kigo-core codec format version the row was written with.
    format_version INTEGER     NOT NULL,
    -- The token through kigo-core's EntryCodec (JSON, optionally sealed); NULL when none.
    entry          BYTEA,
    -- The fence of the lease the stored token was committed under.
    generation     BIGINT      NOT NULL DEFAULT 0,
    -- The last fence granted: every grant increments it.
    fence          BIGINT      NOT NULL DEFAULT 0,
    -- The first 16 bytes of the SHA-256 of the token, for invalidate-if-current.
    fingerprint    BYTEA,
    expires_at     TIMESTAMPTZ,
    lease_holder   TEXT,
    lease_until    TIMESTAMPTZ,
    cooldown_until TIMESTAMPTZ
);
