-- progress: store a running job's progress and tell watchers.
-- KEYS[1] the queue's base "{prefix:queue}" (includes/common.lua derives its keys).
-- ARGV[1] job key prefix   ARGV[2] events max length   ARGV[3] job id
-- ARGV[4] fencing token ('' = any holder)   ARGV[5] progress JSON
-- Returns 1, or -1 no such job, -2 the token is stale.
--@include common
local jobkey = ARGV[1] .. ARGV[3]
local tk = redis.call('HGET', jobkey, 'tk')
if redis.call('EXISTS', jobkey) == 0 then return -1 end
if ARGV[4] ~= '' and tk ~= ARGV[4] then return -2 end
redis.call('HSET', jobkey, 'pg', ARGV[5])
emit(tonumber(ARGV[2]), 'e', 'progress', 'id', ARGV[3], 'pg', ARGV[5])
return 1
