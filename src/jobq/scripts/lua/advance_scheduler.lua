-- advance_scheduler: move a scheduler from tick T to its next tick, once (compare and set).
-- KEYS[1] the queue's base "{prefix:queue}" (includes/common.lua derives its keys), then
--   2 schedulers  ZSET  scheduler id -> next tick (server ms)
--   3 scheduler   HASH  this scheduler (see upsert_scheduler.lua)
-- ARGV[1] job key prefix "{prefix:queue}:j:"
-- ARGV[2] events max length (0 = no events)
-- ARGV[3] scheduler id
-- ARGV[4] the tick T the caller saw as next (server ms)
-- ARGV[5] the next tick T2 (server ms), or '' when the schedule ends (limit or end reached)
-- ARGV[6] the spec JSON the caller computed T2 from
-- Returns 1 advanced: last = T, count + 1, the job of T2 created and next = T2
--   (or, for '', the scheduler taken out of the ZSET and marked ended);
--   0 nothing done: the next tick is no longer T (another process advanced it)
--   or the spec changed meanwhile, or the scheduler is gone (an id left in the
--   ZSET without its hash is removed from it).
--@include common
--@include schedule
local K_SCHEDULERS, K_SCH = KEYS[2], KEYS[3]
local prefix, maxlen, sid, tick, nxt = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5]
local score = redis.call('ZSCORE', K_SCHEDULERS, sid)
if not score or tonumber(score) ~= tonumber(tick) then return 0 end
local spec = redis.call('HGET', K_SCH, 'spec')
if not spec then
  -- An id in the set without its hash (deleted by hand): drop it.
  redis.call('ZREM', K_SCHEDULERS, sid)
  return 0
end
if spec ~= ARGV[6] then return 0 end
redis.call('HSET', K_SCH, 'last', tick)
redis.call('HINCRBY', K_SCH, 'count', 1)
if nxt == '' then
  redis.call('ZREM', K_SCHEDULERS, sid)
  redis.call('HDEL', K_SCH, 'next')
  redis.call('HSET', K_SCH, 'ended', 1)
  return 1
end
redis.call('HSET', K_SCH, 'next', nxt)
redis.call('ZADD', K_SCHEDULERS, nxt, sid)
if add_tick_job(K_SCH, prefix, sid, nxt, server_now(), maxlen) and not is_paused() then
  wake_workers()
end
return 1
