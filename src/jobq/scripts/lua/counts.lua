-- counts: the job counts of a queue, read atomically.
-- KEYS[1] the queue's base "{prefix:queue}" (includes/common.lua derives its keys).
-- ARGV: none.
-- Returns { waiting, active, completed, failed, delayed, paused, prioritized,
--   waiting_children };
-- waiting includes jobs waiting in their groups; while the queue is paused
-- its waiting jobs count as paused.
--@include common
local plain = redis.call('LLEN', K_WAIT)
local prio = redis.call('ZCARD', K_PRIO)
local grouped = tonumber(redis.call('HGET', K_META, 'gw') or 0)
local waiting, paused = plain + prio + grouped, 0
if is_paused() then waiting, paused = 0, plain + prio + grouped end
return {waiting, redis.call('ZCARD', K_ACTIVE), redis.call('ZCARD', K_COMPLETED),
  redis.call('ZCARD', K_FAILED), redis.call('ZCARD', K_DELAYED), paused, prio,
  redis.call('ZCARD', K_WAITING_CHILDREN)}
