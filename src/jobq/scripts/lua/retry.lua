-- retry: move failed jobs back to waiting with their attempts reset.
-- KEYS[1] the queue's base "{prefix:queue}" (includes/common.lua derives its keys).
-- ARGV[1] job key prefix   ARGV[2] events max length
-- ARGV[3] job id, or '' for the oldest failed jobs   ARGV[4] at most this many (for '')
-- Returns the number of jobs moved, or -1 no such job, -3 the job has not failed.
--@include common
local prefix, maxlen, id = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local ids
if id ~= '' then
  if redis.call('EXISTS', prefix .. id) == 0 then return -1 end
  if not redis.call('ZSCORE', K_FAILED, id) then return -3 end
  ids = {id}
else
  ids = redis.call('ZRANGE', K_FAILED, 0, tonumber(ARGV[4]) - 1)
end
for _, jid in ipairs(ids) do
  local jobkey = prefix .. jid
  redis.call('ZREM', K_FAILED, jid)
  redis.call('HSET', jobkey, 'a', 0, 'as', 0, 's', 0)
  redis.call('HDEL', jobkey, 'ft', 'fr', 'rv', 'pg')
  enqueue(jobkey, jid, false)
  emit(maxlen, 'e', 'retried', 'id', jid, 'reason', 'retried by hand')
end
if #ids > 0 and not is_paused() then wake_workers() end
return #ids
