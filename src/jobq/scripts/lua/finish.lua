-- finish: report a batch of finished attempts, then (optionally) claim more.
-- KEYS: the queue's standard keys (see includes/common.lua).
-- ARGV[1] job key prefix   ARGV[2] events max length   ARGV[3] count to claim
-- ARGV[4] lease ms         ARGV[5] max stalled        ARGV[6] limiter max
-- ARGV[7] limiter window ms   ARGV[8] worker id   ARGV[9] metrics window (minutes)
-- ARGV[10] number of results R, then 8 values per result:
--   id, fencing token, kind, value, errors JSON, delay ms, keep count, keep age ms
--   kind 'c' completed (value = return value JSON)
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
for i = 0, n - 1 do
  local b = 11 + i * 8
  local id, token, kind, value = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  local jobkey = prefix .. id
  if redis.call('ZSCORE', K_ACTIVE, id) == false or redis.call('HGET', jobkey, 'tk') ~= token then
    codes[#codes + 1] = -2
  else
    codes[#codes + 1] = 1
    redis.call('ZREM', K_ACTIVE, id)
    group_left_active(jobkey, now)
    if kind == 'c' then
      redis.call('HINCRBY', jobkey, 'a', 1)
      redis.call('HSET', jobkey, 'rv', value, 'ft', now)
      if #value <= 16384 then
        emit(maxlen, 'e', 'completed', 'id', id, 'rv', value)
      else
        emit(maxlen, 'e', 'completed', 'id', id)
      end
      finish_into(K_COMPLETED, prefix, id, now, tonumber(ARGV[b + 6]), tonumber(ARGV[b + 7]))
      done = done + 1
    elseif kind == 'f' then
      redis.call('HINCRBY', jobkey, 'a', 1)
      redis.call('HSET', jobkey, 'fr', value, 'er', ARGV[b + 4], 'ft', now)
      emit(maxlen, 'e', 'failed', 'id', id, 'reason', value)
      finish_into(K_FAILED, prefix, id, now, tonumber(ARGV[b + 6]), tonumber(ARGV[b + 7]))
      failed = failed + 1
    elseif kind == 'r' then
      local delay = tonumber(ARGV[b + 5])
      redis.call('HINCRBY', jobkey, 'a', 1)
      redis.call('HSET', jobkey, 'fr', value, 'er', ARGV[b + 4])
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
count_minute(K_MC, now, done, window)
count_minute(K_MF, now, failed, window)
if requeued and not is_paused() then wake_workers() end
local claimed = 0
if want > 0 then
  claimed = claim(prefix, now, want, tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]),
    tonumber(ARGV[7]), maxlen, ARGV[8])
end
return {codes, claimed}
