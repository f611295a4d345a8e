-- drain: delete up to ARGV[4] waiting jobs (and delayed ones when asked).
-- Called repeatedly until it returns 0, so the server never blocks for long.
-- KEYS[1] the queue's base "{prefix:queue}" (includes/common.lua derives its keys).
-- ARGV[1] job key prefix   ARGV[2] events max length   ARGV[3] '1' delayed too
-- ARGV[4] batch size
-- Returns the number of jobs deleted by this call. Their deduplication keys are freed.
--@include common
local prefix, batch = ARGV[1], tonumber(ARGV[4])
local removed = 0
local function take(ids)
  for _, id in ipairs(ids) do
    release_dedup(prefix .. id, id, true)
    delete_job(prefix, id)
  end
  removed = removed + #ids
end
local plain = redis.call('LRANGE', K_WAIT, -batch, -1)
if #plain > 0 then
  redis.call('LTRIM', K_WAIT, 0, -(#plain + 1))
  take(plain)
end
if removed < batch then
  local p = redis.call('ZRANGE', K_PRIO, 0, batch - removed - 1)
  if #p > 0 then redis.call('ZREM', K_PRIO, unpack(p)); take(p) end
end
if removed < batch then
  -- Grouped jobs, group by group.
  for _, g in ipairs(redis.call('HKEYS', K_GSTATE)) do
    if removed >= batch then break end
    local gl = K_GROUP_PREFIX .. g
    local ids = redis.call('LRANGE', gl, -(batch - removed), -1)
    if #ids > 0 then
      redis.call('LTRIM', gl, 0, -(#ids + 1))
      redis.call('HINCRBY', K_META, 'gw', -#ids)
      take(ids)
    end
    group_forget_if_empty(g)
  end
end
if removed < batch and ARGV[3] == '1' then
  local d = redis.call('ZRANGE', K_DELAYED, 0, batch - removed - 1)
  if #d > 0 then redis.call('ZREM', K_DELAYED, unpack(d)); take(d) end
end
if removed == 0 then emit(tonumber(ARGV[2]), 'e', 'drained') end
return removed
