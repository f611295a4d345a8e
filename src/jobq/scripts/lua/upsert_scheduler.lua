-- upsert_scheduler: create or replace a job scheduler and its one pending tick job.
-- KEYS[1] the queue's base "{prefix:queue}" (includes/common.lua derives its keys), then
--   2 schedulers  ZSET    scheduler id -> next tick (server ms), live schedulers only
--   3 scheduler   HASH    this scheduler: spec (JSON), n/d/o/p/l job template
--                          (name, data, options, priority, lifo), next, last, count, ended
--   4 changes     STREAM  capped; an entry per upsert or removal (wakes Scheduler processes)
-- ARGV[1] job key prefix "{prefix:queue}:j:"
-- ARGV[2] events max length (0 = no events)
-- ARGV[3] scheduler id
-- ARGV[4] spec JSON (canonical: the same schedule always gives the same text)
-- ARGV[5] first tick (server ms, computed by the caller from the server's TIME),
--         '' when the schedule has no tick left (it is stored as ended)
-- ARGV[6] template job name
-- ARGV[7] template data (JSON envelope)
-- ARGV[8] template options JSON ('' = defaults)
-- ARGV[9] template priority ('' = plain)
-- ARGV[10] template lifo ('1' or '0')
-- Returns { code, next tick or '' (ended) }:
--   1 created, or replaced because the spec changed (the old pending job is
--     removed unless a worker holds it; count starts again from 0);
--   2 same spec, new template: the schedule is kept, the pending job rewritten
--     if it is still delayed or waiting;
--   0 unchanged (same spec and template): nothing written.
--@include common
--@include schedule
local K_SCHEDULERS, K_SCH, K_CHANGES = KEYS[2], KEYS[3], KEYS[4]
local prefix, maxlen, sid, spec, first = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5]
local template = {'n', ARGV[6], 'd', ARGV[7], 'o', ARGV[8], 'p', ARGV[9], 'l', ARGV[10]}
local now = server_now()

local old = redis.call('HMGET', K_SCH, 'spec', 'n', 'd', 'o', 'p', 'l', 'next', 'ended')
local live = redis.call('ZSCORE', K_SCHEDULERS, sid) ~= false and old[7] ~= false
local created = false

if old[1] == spec and (live or old[8] == '1') then
  if old[2] == ARGV[6] and old[3] == ARGV[7] and old[4] == ARGV[8] and old[5] == ARGV[9]
      and old[6] == ARGV[10] then
    return {0, live and old[7] or ''}
  end
  redis.call('HSET', K_SCH, unpack(template))
  if live and drop_pending(prefix, sid, old[7], maxlen) == 1 then
    created = add_tick_job(K_SCH, prefix, sid, old[7], now, maxlen)
  end
  if created and not is_paused() then wake_workers() end
  redis.call('XADD', K_CHANGES, 'MAXLEN', '~', 100, '*', 'id', sid, 'e', 'template')
  return {2, live and old[7] or ''}
end

if old[7] then drop_pending(prefix, sid, old[7], maxlen) end
redis.call('HSET', K_SCH, 'spec', spec, 'count', 0, unpack(template))
if first == '' then
  redis.call('ZREM', K_SCHEDULERS, sid)
  redis.call('HDEL', K_SCH, 'next')
  redis.call('HSET', K_SCH, 'ended', 1)
else
  redis.call('HDEL', K_SCH, 'ended')
  redis.call('HSET', K_SCH, 'next', first)
  redis.call('ZADD', K_SCHEDULERS, first, sid)
  created = add_tick_job(K_SCH, prefix, sid, first, now, maxlen)
end
-- A delayed job wakes a worker too: it learns the new earliest due time.
if created and not is_paused() then wake_workers() end
redis.call('XADD', K_CHANGES, 'MAXLEN', '~', 100, '*', 'id', sid, 'e', 'upsert')
return {1, first}
