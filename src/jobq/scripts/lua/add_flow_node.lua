-- add_flow_node: add one job of a flow. A job with children waits in
-- waiting-children until they have all finished; a child carries its parent
-- in its extra fields ('x': {"parent": {...}, "pol": ...}).
-- KEYS[1] the queue's base "{prefix:queue}" (includes/common.lua derives its keys).
-- ARGV[1] job key prefix   ARGV[2] events max length   ARGV[3] job id
-- ARGV[4] name   ARGV[5] data JSON   ARGV[6] options JSON ('' = defaults)
-- ARGV[7] priority ('' = plain)   ARGV[8] delay ms (applied once the children are done)
-- ARGV[9] lifo '1' | '0'   ARGV[10] extra JSON ('' = none)
-- ARGV[11] number of children N, then N child job keys
-- Returns 1 when created, 0 when a job with that id existed (nothing written).
--@include common
local prefix, maxlen, id = ARGV[1], tonumber(ARGV[2]), ARGV[3]
if redis.call('EXISTS', prefix .. id) == 1 then return 0 end
local children = {}
for i = 1, tonumber(ARGV[11]) do children[i] = ARGV[11 + i] end
create_job(prefix, id, ARGV[4], ARGV[5], ARGV[6], ARGV[7], tonumber(ARGV[8]), ARGV[9] == '1',
  ARGV[10], server_now(), maxlen, children)
if #children == 0 and not is_paused() then wake_workers() end
return 1
