-- log: append a line to a job's log, keeping at most the newest `max` lines.
-- KEYS[1] the queue's base "{prefix:queue}" (includes/common.lua derives its keys).
-- ARGV[1] job key prefix   ARGV[2] job id   ARGV[3] line   ARGV[4] max lines (0 = all)
-- Returns the number of lines kept, or -1 when there is no such job.
--@include common
local jobkey = ARGV[1] .. ARGV[2]
if redis.call('EXISTS', jobkey) == 0 then return -1 end
local logkey = jobkey .. ':logs'
local len = redis.call('RPUSH', logkey, ARGV[3])
local max = tonumber(ARGV[4])
if max > 0 and len > max then
  redis.call('LTRIM', logkey, -max, -1)
  len = max
end
return len
