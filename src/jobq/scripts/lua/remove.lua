-- remove: delete one job that is not running.
-- KEYS[1] the queue's base "{prefix:queue}" (includes/common.lua derives its keys).
-- ARGV[1] job key prefix   ARGV[2] events max length   ARGV[3] job id
-- Returns 1, or -1 no such job, -3 the job is active (a worker holds it).
-- The job's deduplication key is freed if it still points to the job.
--@include common
local prefix, id = ARGV[1], ARGV[3]
if redis.call('EXISTS', prefix .. id) == 0 then return -1 end
if redis.call('ZSCORE', K_ACTIVE, id) then return -3 end
local gone = redis.call('ZREM', K_PRIO, id) + redis.call('ZREM', K_DELAYED, id) +
  redis.call('ZREM', K_COMPLETED, id) + redis.call('ZREM', K_FAILED, id) +
  redis.call('ZREM', K_WAITING_CHILDREN, id)
if gone == 0 then
  local g = redis.call('HGET', prefix .. id, 'g')
  if g then
    if redis.call('LREM', K_GROUP_PREFIX .. g, 1, id) == 1 then
      redis.call('HINCRBY', K_META, 'gw', -1)
      group_forget_if_empty(g)
    end
  else
    redis.call('LREM', K_WAIT, 1, id)
  end
end
release_dedup(prefix .. id, id, true)
delete_job(prefix, id)
emit(tonumber(ARGV[2]), 'e', 'removed', 'id', id)
return 1
