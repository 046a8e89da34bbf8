-- Finds the rows whose token has expired, so that their token material is cleared a few rows
-- at a time (with commits, and by SqlStore::purge_expired) without scanning the table.
CREATE INDEX IF NOT EXISTS {index} ON {table} (expires_at_us);
