-- The primary key in the byte order of its keys (TokenKey::storage_id), whatever the database's
-- collation: it serves the operator's walk over the keys, so migration 3's index, a second copy
-- of every key (about 50 bytes per key), goes. Rebuilding the primary key blocks the table's
-- writes as migration 2 does; the rows stay as they are (the type does not change).
ALTER TABLE {table} ALTER COLUMN token_key TYPE TEXT COLLATE "C";
DROP INDEX IF EXISTS {qualified_key_index};
