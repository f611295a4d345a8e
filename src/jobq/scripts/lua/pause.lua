-- pause: stop (ARGV[2] = '1') or restart (ARGV[2] = '0') claims on the queue.
-- Running jobs are not touched.
-- KEYS[1] the queue's base "{prefix:queue}" (includes/common.lua derives its keys).
-- ARGV[1] events max length   ARGV[2] '1' pause | '0' resume
-- Returns 1 when the state changed, 0 when it already was so.
--@include common
local maxlen = tonumber(ARGV[1])
if ARGV[2] == '1' then
  if redis.call('HSETNX', K_META, 'paused', '1') == 0 then return 0 end
  emit(maxlen, 'e', 'paused')
else
  if redis.call('HDEL', K_META, 'paused') == 0 then return 0 end
  emit(maxlen, 'e', 'resumed')
  wake_workers()
end
return 1
