-- add: add one or many jobs in one atomic step.
-- KEYS: the queue's standard keys (see includes/common.lua).
-- ARGV[1] job key prefix "{prefix:queue}:j:"
-- ARGV[2] events max length (0 = no events)
-- ARGV[3] number of jobs N, then 7 values per job:
--   id ('' = generate), name, data JSON, options JSON ('' = defaults),
--   priority ('' = plain), delay ms, lifo ('1' or '0')
-- Returns { id1, created1, id2, created2, ... }; created is 0 when a job with
-- that id already existed (nothing written for it).
--@include common
local prefix, maxlen, n = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local now = server_now()
local out = {}
local ready = false
for i = 0, n - 1 do
  local b = 4 + i * 7
  local id, name, data, opts = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  local prio, delay, lifo = ARGV[b + 4], tonumber(ARGV[b + 5]), ARGV[b + 6] == '1'
  local created = 1
  if id == '' then
    id = tostring(redis.call('INCR', K_ID))
  elseif redis.call('EXISTS', prefix .. id) == 1 then
    created = 0
  end
  if created == 1 then
    create_job(prefix, id, name, data, opts, prio, delay, lifo, '', now, maxlen)
    ready = true
  end
  out[#out + 1] = id
  out[#out + 1] = created
end
-- Delayed jobs wake a worker too: it learns the new earliest due time.
if ready and not is_paused() then wake_workers() end
return out
