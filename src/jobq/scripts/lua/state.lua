-- state: the state of one job, read atomically.
-- KEYS[1] the queue's base "{prefix:queue}" (includes/common.lua derives its keys).
-- ARGV[1] job key prefix   ARGV[2] job id
-- Returns 'active' | 'completed' | 'failed' | 'delayed' | 'waiting-children' | 'prioritized' |
--   'waiting' | 'paused' | 'unknown' (no such job).
--@include common
local id = ARGV[2]
if redis.call('EXISTS', ARGV[1] .. id) == 0 then return 'unknown' end
if redis.call('ZSCORE', K_ACTIVE, id) then return 'active' end
if redis.call('ZSCORE', K_COMPLETED, id) then return 'completed' end
if redis.call('ZSCORE', K_FAILED, id) then return 'failed' end
if redis.call('ZSCORE', K_DELAYED, id) then return 'delayed' end
if redis.call('ZSCORE', K_WAITING_CHILDREN, id) then return 'waiting-children' end
if is_paused() then return 'paused' end
if redis.call('ZSCORE', K_PRIO, id) then return 'prioritized' end
return 'waiting'
