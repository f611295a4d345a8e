-- child_done: record that a child of a flow finished, on its PARENT's queue.
-- Idempotent: a child is counted once however often it is delivered.
-- KEYS[1] the parent queue's base "{prefix:queue}" (includes/common.lua derives its keys).
-- ARGV[1] parent job key prefix   ARGV[2] events max length   ARGV[3] parent id
-- ARGV[4] child job key   ARGV[5] outcome 'c' (completed) | 'f' (failed)
-- ARGV[6] the child's return value JSON ('c') or failure reason ('f')
-- ARGV[7] what a failed child does to the parent: 'fail' | 'ignore' | 'continue'
-- Returns 1 recorded, 2 recorded and the parent can run now, 3 recorded and
-- the parent failed, 0 already recorded (or not a child of it), -1 no parent.
--@include common
local prefix, maxlen, pid = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local child, outcome, value, policy = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local pkey = prefix .. pid
if redis.call('EXISTS', pkey) == 0 then return -1 end
if redis.call('SREM', pkey .. ':deps', child) == 0 then return 0 end
local now = server_now()

local function release_parent()
  if redis.call('ZREM', K_WAITING_CHILDREN, pid) == 0 then return 1 end
  local delay = tonumber(redis.call('HGET', pkey, 'dl') or 0)
  if delay > 0 then
    redis.call('ZADD', K_DELAYED, now + delay, pid)
    emit(maxlen, 'e', 'delayed', 'id', pid, 'delay', delay)
  else
    enqueue(pkey, pid, false)
    emit(maxlen, 'e', 'waiting', 'id', pid, 'reason', 'children done')
  end
  if not is_paused() then wake_workers() end
  return 2
end

if outcome == 'c' then
  redis.call('HSET', pkey .. ':processed', child, value)
else
  redis.call('HSET', pkey .. ':failed', child, value)
  if policy == 'fail' then
    if redis.call('ZREM', K_WAITING_CHILDREN, pid) == 0 then return 1 end
    local reason = 'child ' .. child .. ' failed: ' .. value
    redis.call('HSET', pkey, 'fr', reason, 'ft', now)
    local count, age = -1, -1
    local opts = redis.call('HGET', pkey, 'o')
    if opts then
      local kf = cjson.decode(opts)['keep_failed']
      if kf then count, age = tonumber(kf[1]), tonumber(kf[2]) end
    end
    emit(maxlen, 'e', 'failed', 'id', pid, 'reason', reason)
    count_minute(K_MF, now, 1, 1440)
    finish_into(K_FAILED, prefix, pid, now, count, age)
    return 3
  elseif policy == 'continue' then
    return release_parent()
  end
end
if redis.call('SCARD', pkey .. ':deps') == 0 then return release_parent() end
return 1
