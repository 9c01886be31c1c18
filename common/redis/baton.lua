#!lua name=baton
-- Baton's server-side state changes (docs/ARCHITECTURE.md §4-5).
-- Loaded by the coordinator at start (FUNCTION LOAD REPLACE) when
-- baton_version() differs from the version compiled into the binary.
-- The transition logic itself lives in the coordinator's pure engine; these
-- functions make each transition atomic, fenced by the partition epoch and
-- idempotent by the events offset.

local LIBRARY_VERSION = 1

local function baton_version(keys, args)
  return LIBRARY_VERSION
end

-- baton_apply: one run transition, all or nothing.
-- KEYS: 1 run hash, 2 ctx hash, 3 outbox hash, 4 audit stream, 5 epoch:<p>,
--       6 applied:<p>, 7 timers:<p>, 8 active:<p>, 9 exceptions zset
-- ARGV: 1 caller epoch, 2 events offset (-1: internal event, no offset check),
--       3 mode "new" (run must not exist) | "upd" (run must exist),
--       4 run id, 5 now ms, then sections, each a count followed by its items:
--       run fields (f, v)*, ctx fields (f, v)*, outbox puts (f, v)*,
--       outbox dels f*, timer adds (member, due_ms)*, timer dels member*,
--       audit entries (kind, at_ms, actor, detail)*,
--       then the ending: "" (still running) or "completed" | "exception" | ...,
--       then the exception reason ("" for none).
-- Returns "OK", "DUP" (offset already applied), "EXISTS" (new run that exists;
-- the offset is still recorded), "MISSING" (update of an unknown run), or an
-- error "FENCED <current epoch>".
local function baton_apply(keys, args)
  local epoch = tonumber(redis.call('GET', keys[5]) or '0')
  if tonumber(args[1]) ~= epoch then
    return redis.error_reply('FENCED ' .. epoch)
  end
  local offset = tonumber(args[2])
  if offset >= 0 then
    local applied = tonumber(redis.call('GET', keys[6]) or '-1')
    if offset <= applied then
      return redis.status_reply('DUP')
    end
    redis.call('SET', keys[6], args[2])
  end
  local mode = args[3]
  local exists = redis.call('EXISTS', keys[1]) == 1
  if mode == 'new' and exists then
    return redis.status_reply('EXISTS')
  end
  if mode == 'upd' and not exists then
    return redis.status_reply('MISSING')
  end
  local run_id = args[4]
  local now = args[5]
  local i = 6

  local n = tonumber(args[i]); i = i + 1
  if n > 0 then
    local t = {}
    for k = 0, 2 * n - 1 do t[#t + 1] = args[i + k] end
    redis.call('HSET', keys[1], unpack(t))
    i = i + 2 * n
  end
  n = tonumber(args[i]); i = i + 1
  if n > 0 then
    local t = {}
    for k = 0, 2 * n - 1 do t[#t + 1] = args[i + k] end
    redis.call('HSET', keys[2], unpack(t))
    i = i + 2 * n
  end
  n = tonumber(args[i]); i = i + 1
  if n > 0 then
    local t = {}
    for k = 0, 2 * n - 1 do t[#t + 1] = args[i + k] end
    redis.call('HSET', keys[3], unpack(t))
    i = i + 2 * n
  end
  n = tonumber(args[i]); i = i + 1
  for k = 0, n - 1 do redis.call('HDEL', keys[3], args[i + k]) end
  i = i + n
  n = tonumber(args[i]); i = i + 1
  for k = 0, n - 1 do redis.call('ZADD', keys[7], args[i + 2 * k + 1], args[i + 2 * k]) end
  i = i + 2 * n
  n = tonumber(args[i]); i = i + 1
  for k = 0, n - 1 do redis.call('ZREM', keys[7], args[i + k]) end
  i = i + n
  n = tonumber(args[i]); i = i + 1
  for k = 0, n - 1 do
    local b = i + 4 * k
    redis.call('XADD', keys[4], '*', 'kind', args[b], 'at', args[b + 1], 'actor', args[b + 2],
               'detail', args[b + 3])
  end
  i = i + 4 * n

  local ending = args[i]
  local reason = args[i + 1]
  if ending == '' then
    if mode == 'new' then redis.call('SADD', keys[8], run_id) end
  else
    redis.call('SREM', keys[8], run_id)
  end
  if reason ~= nil and reason ~= '' then
    redis.call('ZADD', keys[9], now, run_id)
  end
  return redis.status_reply('OK')
end

-- baton_record_write: apply one step attempt's writes to a shared record.
-- KEYS: 1 record hash, 2 the record's write memo hash
-- ARGV: 1 idempotency key "<run>:<step>:<attempt>", 2 record version the step
--       read (0: absent), 3 writer "<run>:<step>", 4 memo TTL seconds,
--       5 n allowed fields, allowed..., then n fields, (field, JSON value)*
-- Returns {"OK", new_version, old_1, ..., old_n} (old values as JSON text,
-- "null" when absent), {"COLLISION", current_version} or
-- {"FORBIDDEN", field}. The reply is memoised under the idempotency key, so a
-- replay of the same attempt gets the same answer and writes nothing.
local function baton_record_write(keys, args)
  local memo = redis.call('HGET', keys[2], args[1])
  if memo then
    return cjson.decode(memo)
  end
  local version_read = tonumber(args[2])
  local writer = args[3]
  local ttl = tonumber(args[4])
  local n_allowed = tonumber(args[5])
  local allowed = {}
  for k = 1, n_allowed do allowed[args[5 + k]] = true end
  local i = 6 + n_allowed
  local n = tonumber(args[i]); i = i + 1

  local reply
  for k = 0, n - 1 do
    local f = args[i + 2 * k]
    if not allowed[f] or string.sub(f, 1, 1) == '_' then
      reply = {'FORBIDDEN', f}
      break
    end
  end
  if not reply then
    local current = tonumber(redis.call('HGET', keys[1], '_v') or '0')
    if current ~= version_read then
      reply = {'COLLISION', current}
    else
      reply = {'OK', current + 1}
      local sets = {'_v', tostring(current + 1)}
      for k = 0, n - 1 do
        local f = args[i + 2 * k]
        local old = redis.call('HGET', keys[1], f)
        reply[#reply + 1] = old or 'null'
        sets[#sets + 1] = f
        sets[#sets + 1] = args[i + 2 * k + 1]
        sets[#sets + 1] = '_w:' .. f
        sets[#sets + 1] = writer
      end
      redis.call('HSET', keys[1], unpack(sets))
    end
  end
  redis.call('HSET', keys[2], args[1], cjson.encode(reply))
  if ttl > 0 then redis.call('EXPIRE', keys[2], ttl) end
  return reply
end

redis.register_function{function_name = 'baton_version', callback = baton_version,
                        flags = {'no-writes'}}
redis.register_function('baton_apply', baton_apply)
redis.register_function('baton_record_write', baton_record_write)
