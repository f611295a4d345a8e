-- dead_letter_replay: record on a dead-letter entry that it was replayed.
-- KEYS[1] the queue's base "{prefix:queue}" (includes/common.lua derives its keys).
-- ARGV[1] job key prefix   ARGV[2] entry id   ARGV[3] replayed by (who)
-- ARGV[4] id of the job the replay added   ARGV[5] '1' the data was edited
-- ARGV[6] how many history records to keep (the most recent)
-- Returns { replay count, server time of this replay (ms) }, or -1 no such entry.
--@include common
local jobkey = ARGV[1] .. ARGV[2]
if redis.call('HEXISTS', jobkey, 'dq') == 0 then return -1 end
local now = server_now()
local n = redis.call('HINCRBY', jobkey, 'dc', 1)
local raw = redis.call('HGET', jobkey, 'dr')
local history = raw and cjson.decode(raw) or {}
history[#history + 1] = {n = n, by = ARGV[3], at = now, job = ARGV[4], edited = ARGV[5] == '1'}
while #history > math.max(1, tonumber(ARGV[6])) do table.remove(history, 1) end
redis.call('HSET', jobkey, 'dr', cjson.encode(history))
return {n, now}
