-- promote: move a delayed job to waiting now.
-- KEYS[1] the queue's base "{prefix:queue}" (includes/common.lua derives its keys).
-- ARGV[1] job key prefix   ARGV[2] events max length   ARGV[3] job id
-- Returns 1, or -1 no such job, -3 the job is not delayed.
--@include common
local prefix, id = ARGV[1], ARGV[3]
if redis.call('EXISTS', prefix .. id) == 0 then return -1 end
if redis.call('ZREM', K_DELAYED, id) == 0 then return -3 end
enqueue(prefix .. id, id, false)
emit(tonumber(ARGV[2]), 'e', 'waiting', 'id', id, 'reason', 'promoted')
if not is_paused() then wake_workers() end
return 1
