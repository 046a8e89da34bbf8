-- One row per token key: the current token, its lease and its cool-down.
-- Times are microseconds since the Unix epoch, read from the machine's clock by SQLite
-- (julianday('now')), the one clock every process sharing the file agrees on.
CREATE TABLE IF NOT EXISTS {table} (
    -- TokenKey::storage_id(): p/<partner> or u/<partner>/<user>, percent-encoded.
    token_key         TEXT    NOT NULL PRIMARY KEY,
    -- The kigo-core codec format version the row was written with.
    format_version    INTEGER NOT NULL,
    -- The token through kigo-core's EntryCodec (JSON, optionally sealed); NULL when none.
    entry             BLOB,
    -- The fence of the lease the stored token was committed under.
    generation        INTEGER NOT NULL DEFAULT 0,
    -- The last fence granted: every grant increments it.
    fence             INTEGER NOT NULL DEFAULT 0,
    -- The first 16 bytes of the SHA-256 of the token, for invalidate-if-current.
    fingerprint       BLOB,
    expires_at_us     INTEGER,
    lease_holder      TEXT,
    lease_until_us    INTEGER,
    cooldown_until_us INTEGER
) STRICT;
