-- clean: delete up to ARGV[5] jobs of one state older than a grace period.
-- KEYS[1] the queue's base "{prefix:queue}" (includes/common.lua derives its keys).
-- ARGV[1] job key prefix   ARGV[2] events max length
-- ARGV[3] state: completed | failed | delayed | waiting   ARGV[4] grace ms
-- ARGV[5] limit
-- Age: finished time for completed and failed, due time for delayed,
-- created time for waiting. Returns the deleted ids. Their deduplication keys
-- are freed (even one with a TTL, as remove does).
--@include common
local prefix, state = ARGV[1], ARGV[3]
local limit = tonumber(ARGV[5])
local cutoff = server_now() - tonumber(ARGV[4])
local ids = {}
if state == 'waiting' then
  local scan = redis.call('LRANGE', K_WAIT, 0, -1)
  for _, id in ipairs(scan) do
    if #ids >= limit then break end
    local t = tonumber(redis.call('HGET', prefix .. id, 't') or 0)
    if t <= cutoff then
      ids[#ids + 1] = id
      redis.call('LREM', K_WAIT, 1, id)
    end
  end
  local p = redis.call('ZRANGE', K_PRIO, 0, -1)
  for _, id in ipairs(p) do
    if #ids >= limit then break end
    local t = tonumber(redis.call('HGET', prefix .. id, 't') or 0)
    if t <= cutoff then
      ids[#ids + 1] = id
      redis.call('ZREM', K_PRIO, id)
    end
  end
  for _, g in ipairs(redis.call('HKEYS', K_GSTATE)) do
    for _, id in ipairs(redis.call('LRANGE', K_GROUP_PREFIX .. g, 0, -1)) do
      if #ids >= limit then break end
      local t = tonumber(redis.call('HGET', prefix .. id, 't') or 0)
      if t <= cutoff then
        ids[#ids + 1] = id
        redis.call('LREM', K_GROUP_PREFIX .. g, 1, id)
        redis.call('HINCRBY', K_META, 'gw', -1)
      end
    end
    group_forget_if_empty(g)
  end
else
  local set = ({completed = K_COMPLETED, failed = K_FAILED, delayed = K_DELAYED})[state]
  if not set then return redis.error_reply('jobq: clean cannot take state ' .. state) end
  ids = redis.call('ZRANGEBYSCORE', set, '-inf', cutoff, 'LIMIT', 0, limit)
  if #ids > 0 then redis.call('ZREM', set, unpack(ids)) end
end
local maxlen = tonumber(ARGV[2])
for _, id in ipairs(ids) do
  release_dedup(prefix .. id, id, true)
  delete_job(prefix, id)
  emit(maxlen, 'e', 'removed', 'id', id, 'reason', 'cleaned')
end
return ids
