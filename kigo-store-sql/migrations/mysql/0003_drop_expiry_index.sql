-- Expired tokens are now found by walking the primary key a batch of rows at a time (see the
-- store's sweep), so migration 2's index on expiry goes: every commit changed it, and each of
-- its entries carried a copy of the key.
DROP INDEX {index} ON {table};
