//! The Lua scripts that make every read-check-write of the store atomic.
//!
//! Each script gets the keys of one token in the order of
//! [`KeyNames::in_script_order`](crate::keys::KeyNames::in_script_order), all in one Cluster slot
//! (one hash tag). [`redis::Script`] sends `EVALSHA` and loads the script again after a
//! `NOSCRIPT` (a restart, a failover or `SCRIPT FLUSH`).
//!
//! A value of a foreign type or form under one of the keys (written by another program or by
//! hand) never makes a script fail: reads go through `redis.pcall`, and writes replace it.
//!
//! Every script first checks that the server is Redis 7 or newer (else a
//! [`UNSUPPORTED_SERVER`] error) and the ACL (`redis.acl_check_cmd`), so that a user missing a
//! permission gets a `NOPERM` error; the client classifies both by code, and nothing changed.
//!
//! Every script may run twice with the same arguments (a lost reply is settled by running it
//! again): the second run reports the same result and changes nothing more (`invalidate` and
//! `purge` excepted: run again, they find nothing left to remove and report so).
//!
//! # The record
//!
//! One string key per token key holds everything that must outlive a lease: a header packed
//! with Lua's `struct` library as `>BI5I5I4` (15 bytes, big-endian), then the sealed entry:
//!
//! | bytes | field |
//! |---:|---|
//! | 1 | the layout version, 1 |
//! | 5 | the generation of the stored entry (0 if none was ever committed) |
//! | 5 | the last fence granted (never below the generation) |
//! | 4 | the token's expiry, Unix seconds rounded down (0 without a token) |
//! | rest | the entry, as [`EntryCodec`](kigo_core::codec::EntryCodec) wrote it (empty without a token) |
//!
//! The header is kept this small because every byte counts at a million keys: Redis allocates
//! a value in size classes (128, 160, 192 bytes...), and a 42-byte token's binary entry (108
//! bytes) with this header still fits 128. Five-byte counts reach 2^40 (a grant every
//! millisecond for 34 years; `acquire` refuses to go further rather than wrap), exact in Lua's
//! numbers (doubles). There is no fingerprint: `invalidate` opens the entry in the client and
//! compares there (see [`INVALIDATE`]). A string shorter than the header or of another layout
//! version is foreign: read as an empty record (and reported as a corrupt entry by `load`),
//! replaced by the next write.
//!
//! Redis does not drop an expired token by itself any more: `load` compares the expiry with the
//! server's clock (`TIME`) and reports a token past it as absent (up to a second early, the
//! expiry being rounded down), and `purge` removes its bytes. The record's TTL keeps the
//! generation and the fence for the retention after the last lease or commit, and at least as
//! long as the token: `PXAT max(now + retention, expiry)`, kept (`KEEPTTL`) by the writes that
//! only remove.

use std::sync::LazyLock;

use redis::Script;

/// The error code of a script on a server older than Redis 7.
pub(crate) const UNSUPPORTED_SERVER: &str = "KIGO_UNSUPPORTED_SERVER";

/// Helpers every script starts with.
macro_rules! script {
    ($body:literal) => {
        LazyLock::new(|| {
            Script::new(concat!(
                r#"
local record, lease, cooldown, legacy_fence, legacy_state = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]

-- The record's header (see the Rust module's docs), and the first count it cannot hold.
local HEADER, HEADER_LEN, VERSION = '>BI5I5I4', 15, 1
local COUNT_LIMIT = 1099511627776

-- The string at `key`, false if absent, nil if a foreign type is stored there.
local function read_string(key)
  local reply = redis.pcall('GET', key)
  if type(reply) == 'table' then return nil end
  return reply
end

-- A count written by the store (digits, below the limit), else 0.
local function count(value)
  if type(value) ~= 'string' or #value > 13 or not string.match(value, '^%d+$') then return 0 end
  local n = tonumber(value)
  if n >= COUNT_LIMIT then return 0 end
  return n
end

-- The record: its fields, and `foreign` 1 if the key holds something the store did not write
-- (then read as an empty record).
local function read_record()
  local r = {generation = 0, fence = 0, expiry = 0, entry = '', foreign = 0}
  local value = read_string(record)
  if value == false then return r end
  if value == nil or #value < HEADER_LEN or string.byte(value, 1) ~= VERSION then
    r.foreign = 1
    return r
  end
  local _, generation, fence, expiry = struct.unpack(HEADER, value)
  r.generation, r.fence, r.expiry = generation, fence, expiry
  r.entry = string.sub(value, HEADER_LEN + 1)
  return r
end

-- Writes the record `r`, expiring at `at` (Unix ms), or with its TTL kept if `at` is nil.
local function write_record(r, at)
  local value = struct.pack(HEADER, VERSION, r.generation, r.fence, r.expiry) .. r.entry
  if at then
    redis.call('SET', record, value, 'PXAT', at)
  else
    redis.call('SET', record, value, 'KEEPTTL')
  end
end

-- Forgets the token of `r`; its generation and fence stay.
local function forget_token(r)
  r.entry, r.expiry = '', 0
end

-- The server's clock, Unix ms.
local function now_ms()
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end

-- Whether the token of `r` is past its expiry by the server's clock.
local function expired(r)
  return r.expiry * 1000 <= now_ms()
end

-- When the record `r` may expire: the retention after now, and not before its token.
local function kept_until(r, retention_ms)
  return math.max(now_ms() + tonumber(retention_ms), r.expiry * 1000)
end

-- Why the script must not run, as an error the client classifies by code: a server older than
-- Redis 7, or the first of `commands` (argument lists) the ACL user may not run. nil if none.
local function refusal(commands)
  if not redis.REDIS_VERSION_NUM then
    return redis.error_reply('KIGO_UNSUPPORTED_SERVER the token store needs Redis 7 or newer')
  end
  for _, command in ipairs(commands) do
    if not redis.acl_check_cmd(unpack(command)) then
      return redis.error_reply('NOPERM the Redis user of the token store may not run ' .. command[1])
    end
  end
  return nil
end
"#,
                $body
            ))
        })
    };
}

/// `load`: `{entry or nil, 1 if the record is foreign, generation, cool-down PTTL}`. A token
/// past its expiry by the server's clock is no entry.
pub(crate) static LOAD: LazyLock<Script> = script!(
    r#"
local refused = refusal({{'GET', record}, {'TIME'}, {'PTTL', cooldown}})
if refused then return refused end
local r = read_record()
local entry = false
if r.entry ~= '' and not expired(r) then entry = r.entry end
return {entry, r.foreign, r.generation, redis.call('PTTL', cooldown)}
"#
);

/// `acquire_lease`, ARGV `holder, ttl ms, retention ms`: `{1, fence}` if granted, `{0, PTTL}` if
/// held. A value without a TTL (or of another type) under the lease key is no lease: replaced.
///
/// The fence granted is above the last one granted and the stored generation, and above the
/// fence counter and generation of the earlier layout (a store upgraded on a live Redis), so
/// that fences never go back. It is written into the record, which then lives for the retention
/// (and at least as long as its token).
///
/// Running it twice is harmless: a lease already granted to `holder` is reported granted again,
/// with its fence. So a request whose reply was lost (which the cluster client even sends again
/// by itself) is settled by running it again.
pub(crate) static ACQUIRE: LazyLock<Script> = script!(
    r#"
local refused = refusal({{'PTTL', lease}, {'GET', lease}, {'DEL', lease}, {'GET', record},
  {'GET', legacy_fence}, {'HGET', legacy_state, 'gen'}, {'TIME'}, {'SET', record, '1'},
  {'SET', lease, '1'}})
if refused then return refused end
local left = redis.call('PTTL', lease)
local current = read_string(lease)
if left > 0 and current then
  local granted, holder = string.match(current, '^(%d+):(.*)$')
  if holder == ARGV[1] then return {1, tonumber(granted)} end
  return {0, left}
end
if left ~= -2 then redis.call('DEL', lease) end
local r = read_record()
local legacy_generation = redis.pcall('HGET', legacy_state, 'gen')
r.fence = math.max(r.fence, r.generation, count(read_string(legacy_fence)),
  count(legacy_generation)) + 1
if r.fence >= COUNT_LIMIT then
  return redis.error_reply('KIGO_FENCES_EXHAUSTED the fences of this key reached 2^40')
end
-- One write with its retention: an unusable retention fails before anything was granted.
write_record(r, kept_until(r, ARGV[3]))
redis.call('SET', lease, r.fence .. ':' .. ARGV[1], 'NX', 'PX', ARGV[2])
return {1, r.fence}
"#
);

/// `release_lease`, ARGV `lease value`: compare-and-delete; 1 if released.
pub(crate) static RELEASE: LazyLock<Script> = script!(
    r#"
local refused = refusal({{'GET', lease}, {'DEL', lease}})
if refused then return refused end
if read_string(lease) == ARGV[1] then
  redis.call('DEL', lease)
  return 1
end
return 0
"#
);

/// `commit`, ARGV `lease value, fence, entry, expiry (Unix s), channel, storage id, retention
/// ms`: 1 if committed, 0 if the lease is not held or the fence is not newer.
///
/// Running it twice is harmless: when the stored generation and entry are already this
/// commit's, it reports the commit again. So a commit whose reply was lost is settled by
/// running it again.
pub(crate) static COMMIT: LazyLock<Script> = script!(
    r#"
local refused = refusal({{'GET', record}, {'GET', lease}, {'TIME'}, {'SET', record, '1'},
  {'DEL', lease, cooldown}, {'PUBLISH', ARGV[5], '1'}})
if refused then return refused end
local r = read_record()
local fence = tonumber(ARGV[2])
if r.generation == fence and r.entry == ARGV[3] then return 1 end
if read_string(lease) ~= ARGV[1] then return 0 end
if fence <= r.generation then return 0 end
r.generation, r.fence = fence, math.max(r.fence, fence)
r.expiry, r.entry = tonumber(ARGV[4]), ARGV[3]
write_record(r, kept_until(r, ARGV[7]))
redis.call('DEL', lease, cooldown)
redis.call('PUBLISH', ARGV[5], ARGV[6])
return 1
"#
);

/// `invalidate`, ARGV `generation as read, entry as read, channel, storage id`: 1 if the record
/// still held that entry at that generation and it is removed; 0 if it changed (a commit or
/// another invalidation came between). The generation and the fence stay.
///
/// The record keeps no fingerprint: the client reads the entry (`load`), opens it and compares
/// the token's fingerprint with the one rejected, then removes exactly the entry it read.
pub(crate) static INVALIDATE: LazyLock<Script> = script!(
    r#"
local refused = refusal({{'GET', record}, {'SET', record, '1', 'KEEPTTL'},
  {'PUBLISH', ARGV[3], '1'}})
if refused then return refused end
local r = read_record()
if r.entry == '' or r.entry ~= ARGV[2] or r.generation ~= tonumber(ARGV[1]) then return 0 end
forget_token(r)
write_record(r, nil)
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
"#
);

/// `purge`: removes the token of the record if it is past its expiry by the server's clock; 1
/// if removed. The generation and the fence stay.
pub(crate) static PURGE: LazyLock<Script> = script!(
    r#"
local refused = refusal({{'GET', record}, {'TIME'}, {'SET', record, '1', 'KEEPTTL'}})
if refused then return refused end
local r = read_record()
if r.entry == '' or not expired(r) then return 0 end
forget_token(r)
write_record(r, nil)
return 1
"#
);

/// `set_cooldown`, ARGV `duration ms`: starts it unless a longer one runs.
pub(crate) static COOLDOWN: LazyLock<Script> = script!(
    r#"
local refused = refusal({{'PTTL', cooldown}, {'SET', cooldown, '1'}})
if refused then return refused end
if redis.call('PTTL', cooldown) < tonumber(ARGV[1]) then
  redis.call('SET', cooldown, '1', 'PX', ARGV[1])
end
return 1
"#
);

/// `lease_holder`: `{lease value, PTTL}` while a lease runs, `{nil, 0}` otherwise (no lease, or a
/// value without a TTL or of another type, which `acquire` replaces).
pub(crate) static LEASE_HOLDER: LazyLock<Script> = script!(
    r#"
local refused = refusal({{'GET', lease}, {'PTTL', lease}})
if refused then return refused end
local left = redis.call('PTTL', lease)
local current = read_string(lease)
if left <= 0 or not current then return {false, 0} end
return {current, left}
"#
);

/// `reseal`, ARGV `entry as read, generation as read, entry resealed`: writes the resealed entry
/// into the record, its TTL and the token's expiry kept, if the record still holds the entry as
/// read at that generation; 1 if written, 0 if it changed (a commit or an invalidation came
/// between).
///
/// Running it twice is harmless: finding its own entry at that generation, it reports it
/// written again.
pub(crate) static RESEAL: LazyLock<Script> = script!(
    r#"
local refused = refusal({{'GET', record}, {'SET', record, '1', 'KEEPTTL'}})
if refused then return refused end
local r = read_record()
if r.foreign == 1 or r.generation ~= tonumber(ARGV[2]) then return 0 end
if r.entry == ARGV[3] then return 1 end
if r.entry ~= ARGV[1] then return 0 end
r.entry = ARGV[3]
write_record(r, nil)
return 1
"#
);
