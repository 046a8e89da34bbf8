//! The Lua scripts that make every read-check-write of the store atomic.
//!
//! Each script gets the five keys of one token in the order of
//! [`KeyNames::in_script_order`](crate::keys::KeyNames::in_script_order), all in one Cluster slot.
//! [`redis::Script`] sends `EVALSHA` and loads the script again after a `NOSCRIPT` (a restart, a
//! failover or `SCRIPT FLUSH`).
//!
//! A value of a foreign type or form under one of the keys (written by another program or by
//! hand) never makes a script fail: reads go through `redis.pcall`, and writes replace it.
//!
//! Every script first checks that the server is Redis 7 or newer (else a
//! [`UNSUPPORTED_SERVER`] error) and the ACL (`redis.acl_check_cmd`), so that a user missing a
//! permission gets a `NOPERM` error; the client classifies both by code, and nothing changed.
//!
//! Every script may run twice with the same arguments (a lost reply is settled by running it
//! again): the second run reports the same result and changes nothing more.

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
local token, state, lease, fence, cooldown = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]

-- The string at `key`, false if absent, nil if a foreign type is stored there.
local function read_string(key)
  local reply = redis.pcall('GET', key)
  if type(reply) == 'table' then return nil end
  return reply
end

-- The generation of the stored token; 0 if none, or if the state key holds something foreign.
local function stored_generation()
  local reply = redis.pcall('HGET', state, 'gen')
  if type(reply) == 'table' then return 0 end
  return tonumber(reply) or 0
end

-- The fingerprint of the stored token, false if none.
local function stored_fingerprint()
  local reply = redis.pcall('HGET', state, 'fp')
  if type(reply) == 'table' then return false end
  return reply
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

-- Drops a state key of a foreign type, so that it can be written.
local function reset_foreign_state()
  if redis.call('TYPE', state)['ok'] ~= 'hash' then redis.call('DEL', state) end
end
"#,
                $body
            ))
        })
    };
}

/// `load`: `{token or nil, 1 if the token key holds a foreign type, generation, cool-down PTTL}`.
pub(crate) static LOAD: LazyLock<Script> = script!(
    r#"
local refused = refusal({{'GET', token}, {'HGET', state, 'gen'}, {'PTTL', cooldown}})
if refused then return refused end
local value = read_string(token)
local foreign = 0
if value == nil then
  value = false
  foreign = 1
end
return {value, foreign, stored_generation(), redis.call('PTTL', cooldown)}
"#
);

/// `acquire_lease`, ARGV `holder, ttl ms, retention ms`: `{1, fence}` if granted, `{0, PTTL}` if
/// held. A value without a TTL (or of another type) under the lease key is no lease: replaced.
///
/// Running it twice is harmless: a lease already granted to `holder` is reported granted again,
/// with its fence. So a request whose reply was lost (which the cluster client even sends again
/// by itself) is settled by running it again.
pub(crate) static ACQUIRE: LazyLock<Script> = script!(
    r#"
local refused = refusal({{'PTTL', lease}, {'GET', lease}, {'DEL', lease}, {'HGET', state, 'gen'},
  {'GET', fence}, {'SET', fence, '1'}, {'SET', lease, '1'}})
if refused then return refused end
local left = redis.call('PTTL', lease)
local current = read_string(lease)
if left > 0 and current then
  local granted, holder = string.match(current, '^(%d+):(.*)$')
  if holder == ARGV[1] then return {1, tonumber(granted)} end
  return {0, left}
end
if left ~= -2 then redis.call('DEL', lease) end
-- Above every fence granted and the stored generation, even when the counter is gone (evicted,
-- expired, or replaced by hand).
local granted = math.max(tonumber(read_string(fence)) or 0, stored_generation()) + 1
-- One write with its retention: an unusable retention fails before anything was counted.
redis.call('SET', fence, granted, 'PX', ARGV[3])
redis.call('SET', lease, granted .. ':' .. ARGV[1], 'NX', 'PX', ARGV[2])
return {1, granted}
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

/// `commit`, ARGV `lease value, fence, entry, expiry (Unix ms), fingerprint, channel, storage
/// id, retention ms`: 1 if committed, 0 if the lease is not held or the fence is not newer.
///
/// Running it twice is harmless: when the stored generation and fingerprint are already this
/// commit's, it reports the commit again. So a commit whose reply was lost is settled by
/// running it again.
pub(crate) static COMMIT: LazyLock<Script> = script!(
    r#"
local refused = refusal({{'HGET', state, 'gen'}, {'GET', lease}, {'SET', token, '1'}, {'TYPE', state},
  {'HSET', state, 'f', '1'}, {'PTTL', token}, {'PEXPIRE', state, '1'}, {'DEL', lease, cooldown},
  {'PUBLISH', ARGV[6], '1'}})
if refused then return refused end
if stored_generation() == tonumber(ARGV[2]) and stored_fingerprint() == ARGV[5] then return 1 end
if read_string(lease) ~= ARGV[1] then return 0 end
if tonumber(ARGV[2]) <= stored_generation() then return 0 end
reset_foreign_state()
redis.call('SET', token, ARGV[3], 'PXAT', ARGV[4])
redis.call('HSET', state, 'gen', ARGV[2], 'fp', ARGV[5])
-- Kept for the retention, and at least as long as the token: invalidate needs its fingerprint.
redis.call('PEXPIRE', state, math.max(tonumber(ARGV[8]), redis.call('PTTL', token)))
redis.call('DEL', lease, cooldown)
redis.call('PUBLISH', ARGV[6], ARGV[7])
return 1
"#
);

/// `invalidate`, ARGV `fingerprint, channel, storage id`: 1 if the token with that fingerprint
/// was current and is removed. The generation stays.
pub(crate) static INVALIDATE: LazyLock<Script> = script!(
    r#"
local refused = refusal({{'EXISTS', token}, {'HGET', state, 'fp'}, {'DEL', token},
  {'HDEL', state, 'fp'}, {'PUBLISH', ARGV[2], '1'}})
if refused then return refused end
if redis.call('EXISTS', token) == 0 or stored_fingerprint() ~= ARGV[1] then return 0 end
redis.call('DEL', token)
redis.call('HDEL', state, 'fp')
redis.call('PUBLISH', ARGV[2], ARGV[3])
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
/// with the token's expiry kept (`KEEPTTL`) if the token key still holds the entry as read at
/// that generation; 1 if written, 0 if it changed (a commit or an invalidation came between).
///
/// Running it twice is harmless: finding its own entry at that generation, it reports it
/// written again.
pub(crate) static RESEAL: LazyLock<Script> = script!(
    r#"
local refused = refusal({{'GET', token}, {'HGET', state, 'gen'}, {'SET', token, '1', 'KEEPTTL'}})
if refused then return refused end
if stored_generation() ~= tonumber(ARGV[2]) then return 0 end
local current = read_string(token)
if current == ARGV[3] then return 1 end
if current ~= ARGV[1] then return 0 end
redis.call('SET', token, ARGV[3], 'KEEPTTL')
return 1
"#
);
