-- One row per token key: the current token, its lease and its cool-down.
-- Times are UTC by the database's clock (UTC_TIMESTAMP(6)); replicas' clocks are never used
-- for leases. Keys and holders compare byte for byte (binary collations).
CREATE TABLE IF NOT EXISTS {table} (
    -- TokenKey::storage_id(): p/<partner> or u/<partner>/<user>, percent-encoded ASCII.
    token_key      VARCHAR(1600) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
    -- The kigo-core codec format version the row was written with.
    format_version INT           NOT NULL,
    -- The token through kigo-core's EntryCodec (JSON, optionally sealed); NULL when none.
    entry          MEDIUMBLOB    NULL,
    -- The fence of the lease the stored token was committed under.
    generation     BIGINT        NOT NULL DEFAULT 0,
    -- The last fence granted: every grant increments it.
    fence          BIGINT        NOT NULL DEFAULT 0,
    -- The first 16 bytes of the SHA-256 of the token, for invalidate-if-current.
    fingerprint    VARBINARY(16) NULL,
    expires_at     DATETIME(6)   NULL,
    lease_holder   TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
    lease_until    DATETIME(6)   NULL,
    cooldown_until DATETIME(6)   NULL
) ENGINE = InnoDB;
