-- finish: report a batch of finished attempts, then (optionally) claim more.
-- KEYS[1] the queue's base "{prefix:queue}" (includes/common.lua derives its keys).
-- ARGV[1] job key prefix   ARGV[2] events max length   ARGV[3] count to claim
-- ARGV[4] lease ms         ARGV[5] max stalled        ARGV[6] limiter max
-- ARGV[7] limiter window ms   ARGV[8] worker id   ARGV[9] metrics window (minutes)
-- ARGV[10] number of results R, then 8 values per result:
--   id, fencing token, kind, value, errors JSON, delay ms, keep count, keep age ms
--   kind 'c' completed (value = return value JSON)
--        'C' the same, of a job that has no group, extra fields ('x') or
--            deduplication key (its worker saw so in its claim): they are not
--            looked for (asking a small hash for a field it lacks walks it)
--        'f' failed for good (value = reason)
--        'r' failed, retry after delay (value = reason)
--        'l' rate limited: back to the front, no attempt spent, queue held `delay` ms
--        'h' handed back (shutdown): back to the front, no attempt spent
-- Returns { {code per result}, claim reply or 0 }.
-- Codes: 1 done, -2 the token is stale (the lease was lost; nothing written).
--@include common
--@include recover
--@include claim
local prefix, maxlen, want = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local window = tonumber(ARGV[9])
local n = tonumber(ARGV[10])
local now = server_now()
local codes = {}
local done, failed, retried = 0, 0, 0
local requeued = false
-- Checked per job: the lease (still in active) and the fencing token. The
-- batch is read with one ZMSCORE and written back with one ZREM and one DEL.
local ids = {}
for i = 0, n - 1 do ids[i + 1] = ARGV[11 + i * 8] end
local leased = {}
for i = 1, n, 4000 do
  for _, score in ipairs(redis.call('ZMSCORE', K_ACTIVE, unpack(ids, i, math.min(n, i + 3999)))) do
    leased[#leased + 1] = score
  end
end
local seen = {}
local left = {} -- ids leaving active
local dels = {} -- keys of jobs removed on completion
local sets = {} -- the finished sets' additions, batched by finish_into
local completed = new_batch(maxlen, 'completed', 'rv') -- one event entry
for i = 0, n - 1 do
  local b = 11 + i * 8
  local id, token, kind, value = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  local jobkey = prefix .. id
  -- tk, attempts made, group, extra, dedup key (false: it has none)
  local f
  if not leased[i + 1] or seen[id] then
    f = {}
  elseif kind == 'C' then
    kind = 'c'
    if ARGV[b + 6] == '0' then -- deleted at once: its attempt count is not kept
      f = {redis.call('HGET', jobkey, 'tk'), false, false, false, false}
    else
      f = redis.call('HMGET', jobkey, 'tk', 'a')
      f[3], f[4], f[5] = false, false, false
    end
  else
    f = redis.call('HMGET', jobkey, 'tk', 'a', 'g', 'x', 'dk')
  end
  if f[1] ~= token then
    codes[#codes + 1] = -2
  else
    seen[id] = true
    codes[#codes + 1] = 1
    left[#left + 1] = id
    group_left_active(jobkey, now, f[3])
    local made = tonumber(f[2] or 0) + 1
    if kind == 'c' then
      local count = tonumber(ARGV[b + 6])
      -- A job deleted at once keeps no result (a flow child's goes to the outbox).
      if count ~= 0 then redis.call('HSET', jobkey, 'a', made, 'rv', value, 'ft', now) end
      add_to_batch(completed, id, #value <= 16384 and value or nil)
      finish_into(K_COMPLETED, prefix, id, now, count, tonumber(ARGV[b + 7]), f[4], f[5], value,
        dels, sets)
      done = done + 1
    elseif kind == 'f' then
      redis.call('HSET', jobkey, 'a', made, 'fr', value, 'er', ARGV[b + 4], 'ft', now)
      emit(maxlen, 'e', 'failed', 'id', id, 'reason', value)
      finish_into(K_FAILED, prefix, id, now, tonumber(ARGV[b + 6]), tonumber(ARGV[b + 7]), f[4],
        f[5], value, dels, sets)
      failed = failed + 1
    elseif kind == 'r' then
      local delay = tonumber(ARGV[b + 5])
      redis.call('HSET', jobkey, 'a', made, 'fr', value, 'er', ARGV[b + 4])
      if delay > 0 then
        redis.call('ZADD', K_DELAYED, now + delay, id)
      else
        enqueue(jobkey, id, false)
      end
      -- Wake an idle worker either way: it learns the new earliest due time.
      requeued = true
      emit(maxlen, 'e', 'retried', 'id', id, 'reason', value, 'delay', delay)
      retried = retried + 1
    else
      -- 'l' and 'h': the attempt does not count; a new token fences the old run.
      redis.call('HINCRBY', jobkey, 'as', -1)
      redis.call('HINCRBY', jobkey, 'tk', 1)
      enqueue(jobkey, id, true)
      requeued = true
      if kind == 'l' then
        redis.call('SET', K_LIMITER, RATE_LIMITED_FLAG, 'PX', math.max(1, tonumber(ARGV[b + 5])))
        emit(maxlen, 'e', 'rate-limited', 'id', id, 'delay', ARGV[b + 5])
      else
        emit(maxlen, 'e', 'waiting', 'id', id, 'reason', 'handed back by a stopping worker')
      end
    end
  end
end
emit_batch(completed)
if #left > 0 then call_many('ZREM', K_ACTIVE, left) end
if #dels > 0 then call_many('DEL', nil, dels) end
-- Add the batch to the finished sets, then trim each set once per retention.
for _, setkey in ipairs(sets) do
  local s = sets[setkey]
  call_many('ZADD', setkey, s.members)
  for _, t in ipairs(s.trims) do keep_trim(setkey, prefix, now, t[1], t[2]) end
end
count_minute(K_MC, now, done, window)
count_minute(K_MF, now, failed, window)
if requeued and not is_paused() then wake_workers() end
local claimed = 0
if want > 0 then
  claimed = claim(prefix, now, want, tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]),
    tonumber(ARGV[7]), maxlen, ARGV[8])
end
return {codes, claimed}
