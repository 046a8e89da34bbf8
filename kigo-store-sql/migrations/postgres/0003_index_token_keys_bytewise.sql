-- Walks the table in the byte order of its keys (TokenKey::storage_id), page by page, whatever
-- the database's collation: what an operator's tool does to list keys or re-seal every entry.
CREATE INDEX IF NOT EXISTS {key_index} ON {table} (token_key COLLATE "C");
