#!lua name=baton
-- Baton's server-side state changes (docs/ARCHITECTURE.md §4-5).
-- Loaded by the coordinator at start (FUNCTION LOAD REPLACE) when
-- baton_version() differs from the version compiled into the binary.
-- The transition logic itself lives in the coordinator's pure engine; these
-- functions make each transition atomic, fenced by the partition epoch and
-- idempotent by the events offset.

local LIBRARY_VERSION = 4

local function baton_version(keys, args)
  return LIBRARY_VERSION
end

-- baton_apply: one run transition, all or nothing.
-- KEYS: 1 run hash, 2 ctx hash, 3 outbox hash, 4 audit stream, 5 epoch:<p>,
--       6 applied:<p>, 7 timers:<p>, 8 active:<p>, 9 exceptions zset,
--       10 approvals zset and 11 notify list (both optional: only needed when
--       the gate and notify sections below are given), 12 runs index zset
--       (optional: a new run is added, scored by now)
-- ARGV: 1 caller epoch, 2 events offset (-1: internal event, no offset check),
--       3 mode "new" (run must not exist) | "upd" (run must exist),
--       4 run id, 5 now ms, then sections, each a count followed by its items:
--       run fields (f, v)*, ctx fields (f, v)*, outbox puts (f, v)*,
--       outbox dels f*, timer adds (member, due_ms)*, timer dels member*,
--       audit entries (kind, at_ms, actor, detail)*,
--       then the ending: "" (no change: a running run goes on; also used to
--       record stale events on ended runs), "resumed" (an ended run runs
--       again, e.g. an operator retry: back in active:<p>, out of the
--       exceptions zset) or "completed" | "exception" | ... (the run ends:
--       out of active:<p>; out of the exceptions zset unless a reason is given),
--       then the exception reason ("" for none; non-empty: the run is put in
--       the exceptions zset, scored by now), then three optional sections:
--       gate adds (member, score)* and gate dels member* on the approvals
--       zset, and notifications item* RPUSHed on the notify list.
-- Returns "OK", "DUP" (offset already applied), "EXISTS" (new run that exists;
-- the offset is still recorded), "MISSING" (update of an unknown run; the
-- offset is still recorded), or an error "FENCED <current epoch>". Malformed
-- arguments give an error "ERR baton_apply: ..." and change nothing (all
-- arguments are checked before the first write: a Redis script is atomic but
-- not transactional, a failing command would leave the earlier writes).

-- Checks one section at args[i] (its count) with `width` args per item;
-- returns the count or nil.
local function section_count(args, i, width)
  local n = tonumber(args[i])
  if n == nil or n < 0 or n % 1 ~= 0 or i + width * n > #args then return nil end
  return n
end

-- Lua's unpack() is limited to a few thousand values: send long runs in chunks.
local CHUNK = 512
local function call_chunked(cmd, key, args, first, count, width)
  local k = 0
  while k < count do
    local m = math.min(count - k, CHUNK)
    local a = first + width * k
    redis.call(cmd, key, unpack(args, a, a + width * m - 1))
    k = k + m
  end
end

local APPLY_WIDTHS = {2, 2, 2, 1, 2, 1, 4}
local APPLY_SECTIONS = {'run fields', 'ctx fields', 'outbox puts', 'outbox dels', 'timer adds', 'timer dels',
                        'audit entries'}

local function baton_apply(keys, args)
  -- One round trip for both partition counters (the offset check needs the
  -- second only for offsets >= 0, the common case).
  local counters = redis.call('MGET', keys[5], keys[6])
  local epoch = tonumber(counters[1] or '0')
  if tonumber(args[1]) ~= epoch then
    return redis.error_reply('FENCED ' .. epoch)
  end

  -- Validate everything before writing anything.
  local offset = tonumber(args[2])
  if offset == nil then return redis.error_reply('ERR baton_apply: bad offset') end
  local mode = args[3]
  if mode ~= 'new' and mode ~= 'upd' then return redis.error_reply('ERR baton_apply: bad mode') end
  local run_id = args[4]
  local now = args[5]
  if run_id == nil or run_id == '' then return redis.error_reply('ERR baton_apply: no run id') end
  if tonumber(now) == nil then return redis.error_reply('ERR baton_apply: bad now') end
  local first, count = {}, {}
  local i = 6
  for s = 1, 7 do
    local w = APPLY_WIDTHS[s]
    local n = section_count(args, i, w)
    if n == nil then return redis.error_reply('ERR baton_apply: bad ' .. APPLY_SECTIONS[s] .. ' count') end
    first[s], count[s] = i + 1, n
    i = i + 1 + w * n
  end
  for k = 0, count[5] - 1 do
    if tonumber(args[first[5] + 2 * k + 1]) == nil then
      return redis.error_reply('ERR baton_apply: bad timer due time')
    end
  end
  local ending = args[i]
  local reason = args[i + 1]
  if ending == nil then return redis.error_reply('ERR baton_apply: no ending') end
  i = i + 2
  local extra_w = {2, 1, 1}
  local extra_names = {'gate adds', 'gate dels', 'notifications'}
  for s = 1, 3 do
    local w = extra_w[s]
    local n = 0
    if args[i] ~= nil then
      n = section_count(args, i, w)
      if n == nil then return redis.error_reply('ERR baton_apply: bad ' .. extra_names[s] .. ' count') end
      if n > 0 and keys[s <= 2 and 10 or 11] == nil then
        return redis.error_reply('ERR baton_apply: ' .. extra_names[s] .. ' need their key')
      end
      first[7 + s], count[7 + s] = i + 1, n
      i = i + 1 + w * n
    else
      first[7 + s], count[7 + s] = i, 0
    end
  end
  for k = 0, count[8] - 1 do
    if tonumber(args[first[8] + 2 * k + 1]) == nil then
      return redis.error_reply('ERR baton_apply: bad gate score')
    end
  end

  if offset >= 0 then
    local applied = tonumber(counters[2] or '-1')
    if offset <= applied then
      return redis.status_reply('DUP')
    end
    redis.call('SET', keys[6], args[2])
  end
  local exists = redis.call('EXISTS', keys[1]) == 1
  if mode == 'new' and exists then
    return redis.status_reply('EXISTS')
  end
  if mode == 'new' and keys[12] ~= nil then redis.call('ZADD', keys[12], now, run_id) end
  if mode == 'upd' and not exists then
    return redis.status_reply('MISSING')
  end

  call_chunked('HSET', keys[1], args, first[1], count[1], 2)
  call_chunked('HSET', keys[2], args, first[2], count[2], 2)
  call_chunked('HSET', keys[3], args, first[3], count[3], 2)
  call_chunked('HDEL', keys[3], args, first[4], count[4], 1)
  for k = 0, count[5] - 1 do
    local b = first[5] + 2 * k
    redis.call('ZADD', keys[7], args[b + 1], args[b])
  end
  call_chunked('ZREM', keys[7], args, first[6], count[6], 1)
  for k = 0, count[7] - 1 do
    local b = first[7] + 4 * k
    redis.call('XADD', keys[4], '*', 'kind', args[b], 'at', args[b + 1], 'actor', args[b + 2],
               'detail', args[b + 3])
  end

  for k = 0, count[8] - 1 do
    local b = first[8] + 2 * k
    redis.call('ZADD', keys[10], args[b + 1], args[b])
  end
  call_chunked('ZREM', keys[10], args, first[9], count[9], 1)
  call_chunked('RPUSH', keys[11], args, first[10], count[10], 1)

  local has_reason = reason ~= nil and reason ~= ''
  if ending == '' then
    -- No change of run state ("upd" also records stale results for ended runs).
    if mode == 'new' then redis.call('SADD', keys[8], run_id) end
  elseif ending == 'resumed' then
    redis.call('SADD', keys[8], run_id)
    redis.call('ZREM', keys[9], run_id)
  else
    redis.call('SREM', keys[8], run_id)
    if not has_reason then redis.call('ZREM', keys[9], run_id) end
  end
  if has_reason then
    redis.call('ZADD', keys[9], now, run_id)
  end
  return redis.status_reply('OK')
end

-- baton_record_write: apply one step attempt's writes to a shared record.
-- KEYS: 1 record hash, 2 this attempt's memo key ({rec:<key>}:w:<idempotency key>)
-- ARGV: 1 idempotency key "<run>:<step>:<attempt>", 2 record version the step
--       read (0: absent), 3 writer "<run>:<step>", 4 memo TTL seconds,
--       5 n allowed fields, allowed..., then n fields, (field, JSON value)*
-- Returns {"OK", new_version, old_1, ..., old_n} (old values as JSON text,
-- "null" when absent), {"COLLISION", current_version} or
-- {"FORBIDDEN", field}. The reply is memoised under the idempotency key, so a
-- replay of the same attempt gets the same answer and writes nothing.
-- Malformed arguments give an error "ERR baton_record_write: ..." and change
-- nothing (and are not memoised).
local function baton_record_write(keys, args)
  local memo = redis.call('GET', keys[2])
  if memo then
    return cjson.decode(memo)
  end
  local version_read = tonumber(args[2])
  local writer = args[3]
  local ttl = tonumber(args[4])
  local n_allowed = section_count(args, 5, 1)
  if args[1] == nil or version_read == nil or writer == nil or ttl == nil or n_allowed == nil then
    return redis.error_reply('ERR baton_record_write: bad arguments')
  end
  local allowed = {}
  for k = 1, n_allowed do allowed[args[5 + k]] = true end
  local i = 6 + n_allowed
  local n = section_count(args, i, 2)
  if n == nil then return redis.error_reply('ERR baton_record_write: bad field count') end
  i = i + 1

  -- Optional fencing (`lock: record` steps): token and now after the fields;
  -- the write is refused unless the record's lease lock (KEYS[3]) is held
  -- with that token and not expired. Not memoised: a later holder may write.
  local token = tonumber(args[i + 2 * n])
  if token ~= nil and token > 0 then
    local now = tonumber(args[i + 2 * n + 1])
    if keys[3] == nil or now == nil then return redis.error_reply('ERR baton_record_write: fencing needs the lock key and now') end
    local lock = redis.call('HMGET', keys[3], 'token', 'expires')
    if tonumber(lock[1] or '0') ~= token or tonumber(lock[2] or '0') < now then
      return {'FENCED', tonumber(lock[1] or '0')}
    end
  end
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
      call_chunked('HSET', keys[1], sets, 1, #sets / 2, 2)
    end
  end
  if ttl > 0 then
    redis.call('SET', keys[2], cjson.encode(reply), 'EX', ttl)
  else
    redis.call('SET', keys[2], cjson.encode(reply))
  end
  return reply
end

-- baton_lock: the lease lock of one shared record, for `lock: record` steps.
-- KEYS: 1 lock hash {holder, token, expires}, 2 waiting list (holders in
--       arrival order), 3 fence counter, 4 locks zset (record key -> expiry,
--       for the expiry sweep; another slot: fine on one Redis)
-- ARGV: 1 op, 2 holder "<run>|<instance>", 3 now ms, 4 lease ms, 5 record key
-- op acquire: free or expired -> {"GRANTED", token} (a new token from the
--             fence counter); already this holder's -> {"GRANTED", token};
--             else the holder joins the waiting list once -> {"QUEUED"}.
-- op release: this holder's -> the lock passes to the first waiter
--             {"NEXT", holder, token} or is freed {"FREE"}; not this holder's
--             -> it leaves the waiting list {"NOT_HOLDER"}.
-- op renew:   this holder's -> expires = now + lease {"RENEWED"}, else {"NOT_HOLDER"}.
-- op expire:  expired -> as a release by the current holder; else {"HELD"}.
local function baton_lock(keys, args)
  local op, holder, now, lease, rkey = args[1], args[2], tonumber(args[3]), tonumber(args[4]), args[5]
  if now == nil or lease == nil or holder == nil or rkey == nil then
    return redis.error_reply('ERR baton_lock: bad arguments')
  end
  local cur = redis.call('HMGET', keys[1], 'holder', 'token', 'expires')
  -- Waiting list entries are "<lease ms> <holder>": a waiter's own lease
  -- applies when the lock passes to it.
  local function grant(h, l)
    local token = redis.call('INCR', keys[3])
    redis.call('HSET', keys[1], 'holder', h, 'token', token, 'expires', now + l)
    redis.call('ZADD', keys[4], now + l, rkey)
    return token
  end
  local function pass_on()
    redis.call('DEL', keys[1])
    local nxt = redis.call('LPOP', keys[2])
    if nxt then
      local sp = string.find(nxt, ' ', 1, true)
      local h, l = string.sub(nxt, sp + 1), tonumber(string.sub(nxt, 1, sp - 1))
      return {'NEXT', h, grant(h, l)}
    end
    redis.call('ZREM', keys[4], rkey)
    return {'FREE'}
  end
  local entry = tostring(lease) .. ' ' .. holder
  if op == 'acquire' then
    if cur[1] == holder then return {'GRANTED', tonumber(cur[2])} end
    if cur[1] == false or tonumber(cur[3] or '0') < now then
      redis.call('LREM', keys[2], 0, entry)
      return {'GRANTED', grant(holder, lease)}
    end
    if redis.call('LPOS', keys[2], entry) == false then redis.call('RPUSH', keys[2], entry) end
    return {'QUEUED'}
  elseif op == 'release' then
    if cur[1] ~= holder then
      -- Leaves the waiting list, whatever lease it asked with.
      local all = redis.call('LRANGE', keys[2], 0, -1)
      for _, e in ipairs(all) do
        if string.sub(e, (string.find(e, ' ', 1, true) or 0) + 1) == holder then redis.call('LREM', keys[2], 0, e) end
      end
      return {'NOT_HOLDER'}
    end
    return pass_on()
  elseif op == 'renew' then
    if cur[1] ~= holder then return {'NOT_HOLDER'} end
    redis.call('HSET', keys[1], 'expires', now + lease)
    redis.call('ZADD', keys[4], now + lease, rkey)
    return {'RENEWED'}
  elseif op == 'expire' then
    if cur[1] == false then
      redis.call('ZREM', keys[4], rkey)
      return {'FREE'}
    end
    if tonumber(cur[3] or '0') >= now then return {'HELD'} end
    return pass_on()
  end
  return redis.error_reply('ERR baton_lock: unknown op')
end

redis.register_function{function_name = 'baton_version', callback = baton_version,
                        flags = {'no-writes'}}
redis.register_function('baton_apply', baton_apply)
redis.register_function('baton_record_write', baton_record_write)
redis.register_function('baton_lock', baton_lock)
