-- obliterate: delete the queue and all its jobs, a batch per call.
-- KEYS[1] the queue's base "{prefix:queue}" (includes/common.lua derives its keys).
-- ARGV[1] job key prefix   ARGV[2] '1' force (even with active jobs)   ARGV[3] batch
-- Returns the number of jobs (then deduplication keys, then schedulers) deleted by this
-- call (call again until 0), or -4 when jobs are active and force was not given.
--@include common
local prefix, batch = ARGV[1], tonumber(ARGV[3])
if ARGV[2] ~= '1' and redis.call('ZCARD', K_ACTIVE) > 0 then return -4 end
-- Pause first so no worker claims while we delete.
redis.call('HSET', K_META, 'paused', '1')
local removed = 0
local plain = redis.call('LRANGE', K_WAIT, -batch, -1)
if #plain > 0 then
  redis.call('LTRIM', K_WAIT, 0, -(#plain + 1))
  for _, id in ipairs(plain) do delete_job(prefix, id) end
  removed = removed + #plain
end
for _, set in ipairs({K_PRIO, K_DELAYED, K_ACTIVE, K_COMPLETED, K_FAILED, K_WAITING_CHILDREN}) do
  if removed >= batch then break end
  local ids = redis.call('ZRANGE', set, 0, batch - removed - 1)
  if #ids > 0 then
    redis.call('ZREM', set, unpack(ids))
    for _, id in ipairs(ids) do delete_job(prefix, id) end
    removed = removed + #ids
  end
end
-- Deduplication keys, found through their index (some outlive their jobs by a TTL).
if removed < batch then
  local dks = redis.call('ZRANGE', K_DEDUP, 0, batch - removed - 1)
  if #dks > 0 then
    redis.call('ZREM', K_DEDUP, unpack(dks))
    for _, dk in ipairs(dks) do redis.call('DEL', K_DEDUP .. ':' .. dk) end
    removed = removed + #dks
  end
end
-- Grouped waiting jobs, then the groups' own keys.
for _, g in ipairs(redis.call('HKEYS', K_GSTATE)) do
  if removed >= batch then break end
  local gl = K_GROUP_PREFIX .. g
  local ids = redis.call('LRANGE', gl, -(batch - removed), -1)
  if #ids > 0 then
    redis.call('LTRIM', gl, 0, -(#ids + 1))
    for _, id in ipairs(ids) do delete_job(prefix, id) end
    removed = removed + #ids
  end
  if redis.call('LLEN', gl) == 0 then
    redis.call('HDEL', K_GSTATE, g)
    redis.call('DEL', K_GRATE_PREFIX .. g)
  end
end
if removed < batch then
  for _, g in ipairs(redis.call('HKEYS', K_GACTIVE)) do redis.call('DEL', K_GRATE_PREFIX .. g) end
  for _, g in ipairs(redis.call('HKEYS', K_GCONF)) do redis.call('DEL', K_GRATE_PREFIX .. g) end
end
-- Schedulers: one hash each, found through their sorted set.
if removed < batch then
  local sids = redis.call('ZRANGE', K_BASE .. ':schedulers', 0, batch - removed - 1)
  if #sids > 0 then
    redis.call('ZREM', K_BASE .. ':schedulers', unpack(sids))
    for _, sid in ipairs(sids) do redis.call('DEL', K_BASE .. ':sch:' .. sid) end
    removed = removed + #sids
  end
end
if removed == 0 then
  redis.call('DEL', K_BASE .. ':schedulers', K_BASE .. ':sch-changes', K_BASE .. ':dead-letters')
  redis.call('DEL', K_GROUPS, K_GSTATE, K_GACTIVE, K_GLIMITED, K_GCONF)
  redis.call('DEL', K_WAIT, K_PRIO, K_DELAYED, K_ACTIVE, K_COMPLETED, K_FAILED, K_META,
    K_EVENTS, K_MARKER, K_LIMITER, K_ID, K_MC, K_MF, K_WORKERS,
    K_WAITING_CHILDREN, K_OUTBOX)
end
return removed
