-- Expired tokens are now found by walking the primary key a batch of rows at a time (see the
-- store's sweep), so migration 2's index on expiry goes: with it, every commit (which sets the
-- expiry) was an update of an indexed column, never a HOT update, and left a dead row version
-- and a dead entry in both indexes behind it. Without it, a commit rewrites its row in place on
-- its page, and the index costs no bytes (about 23 per key packed, 50 live).
DROP INDEX IF EXISTS {qualified_index};
