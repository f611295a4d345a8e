-- remove_scheduler: delete a job scheduler and its pending tick job.
-- KEYS[1] the queue's base "{prefix:queue}" (includes/common.lua derives its keys), then
--   2 schedulers  ZSET    scheduler id -> next tick (server ms)
--   3 scheduler   HASH    this scheduler (see upsert_scheduler.lua)
--   4 changes     STREAM  capped; an entry per upsert or removal
-- ARGV[1] job key prefix "{prefix:queue}:j:"
-- ARGV[2] events max length (0 = no events)
-- ARGV[3] scheduler id
-- Returns 1 removed (its pending job too, unless a worker holds it already:
-- that run finishes, and no further tick follows), 0 no such scheduler.
--@include common
--@include schedule
local K_SCHEDULERS, K_SCH, K_CHANGES = KEYS[2], KEYS[3], KEYS[4]
local prefix, maxlen, sid = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local nxt = redis.call('HGET', K_SCH, 'next')
local existed = redis.call('ZREM', K_SCHEDULERS, sid) + redis.call('DEL', K_SCH)
if existed == 0 then return 0 end
if nxt then drop_pending(prefix, sid, nxt, maxlen) end
redis.call('XADD', K_CHANGES, 'MAXLEN', '~', 100, '*', 'id', sid, 'e', 'remove')
return 1
