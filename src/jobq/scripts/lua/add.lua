-- add: add one or many jobs in one atomic step.
-- KEYS[1] the queue's base "{prefix:queue}" (includes/common.lua derives its keys).
-- ARGV[1] job key prefix "{prefix:queue}:j:"
-- ARGV[2] events max length (0 = no events)
-- ARGV[3] number of jobs N, then 7 values per job:
--   id ('' = generate), name, data JSON, options JSON ('' = defaults),
--   priority ('' = plain), delay ms, lifo ('1' or '0')
-- or -N when the jobs share all but id and data: then once ARGV[4] name,
--   ARGV[5] options, ARGV[6] priority, ARGV[7] delay, ARGV[8] lifo, and 2
--   values per job: id, data.
-- Then, optional (left out: no job deduplicates), at D = 4 + 7N (9 + 2N shared):
--   ARGV[D] deduplication key prefix "{prefix:queue}:dd:"
--   ARGV[D + 1] number of deduplicated jobs M, then 4 values each:
--     job index (1-based, among the N), dedup key, ttl ms (0 = until the job
--     finishes), debounce ('1' or '0')
-- Returns { id1, created1, id2, created2, ... }, or { id1, -N } when all N > 1
-- jobs were created with the ids id1, id1 + 1, ... (none had an id or a
-- deduplication key, the usual bulk add); created is 0 when a job with
-- that id already existed, or when a pending job (or one within its ttl) holds
-- the dedup key: its id is returned and nothing is written for the add
-- ('deduplicated' event), except that a debounced add whose holder is still
-- delayed and never started replaces the holder's name and data and moves it
-- to now + delay ('debounced' event); a signed add (options ending in a "sig"
-- member, see jobq.signing) replaces its options too, which the signature covers.
--@include common
local prefix, maxlen, n = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
-- A batch whose jobs differ only in id and data sends the rest once.
local shared = n < 0
local first, width = 4, 7
local s_name, s_opts, s_prio, s_delay, s_lifo
if shared then
  n, first, width = -n, 9, 2
  s_name, s_opts, s_prio, s_delay, s_lifo = ARGV[4], ARGV[5], ARGV[6], tonumber(ARGV[7]),
    ARGV[8] == '1'
end
local now = server_now()
local out = {}
local ready = false
-- Deduplication specs by job index; the plain path reads only the count.
local dedup = {}
local db = first + n * width
local ddprefix, m = ARGV[db], tonumber(ARGV[db + 1] or '0')
for j = 0, m - 1 do
  local c = db + 2 + j * 4
  dedup[tonumber(ARGV[c])] =
    {key = ARGV[c + 1], ttl = tonumber(ARGV[c + 2]), debounce = ARGV[c + 3] == '1'}
end
-- Drop index entries of keys whose TTL has run out.
if m > 0 then redis.call('ZREMRANGEBYSCORE', K_DEDUP, '-inf', now) end

-- The id of the job holding a dedup key, or nil. A key without a TTL whose job
-- is gone or finished (deleted by hand, say) is stale and holds nothing.
local function holder_of(ddkey)
  local holder = redis.call('GET', ddkey)
  if holder and redis.call('PTTL', ddkey) == -1 and
      (redis.call('EXISTS', prefix .. holder) == 0 or redis.call('ZSCORE', K_COMPLETED, holder) or
       redis.call('ZSCORE', K_FAILED, holder)) then
    return nil
  end
  return holder or nil
end

-- An add absorbed by the holder of its key: debounce it or just report it.
local function absorb(holder, dd, name, data, opts, delay)
  local hk = prefix .. holder
  if dd.debounce and redis.call('ZSCORE', K_DELAYED, holder) and
      tonumber(redis.call('HGET', hk, 'as') or '0') == 0 then
    -- The new data replaces every piece of the old (see add_data_fields).
    redis.call('HDEL', hk, 'd1', 'd2', 'd3', 'd4', 'd5', 'd6', 'd7', 'd8', 'd9', 'd10', 'd11',
      'd12', 'd13', 'd14', 'd15')
    local fields = {'n', name, 'dl', delay}
    redis.call('HSET', hk, unpack(fields, 1, add_data_fields(fields, 4, data, true)))
    if string.find(opts, '"sig":"', 1, true) then redis.call('HSET', hk, 'o', opts) end
    redis.call('ZADD', K_DELAYED, now + delay, holder)
    emit(maxlen, 'e', 'debounced', 'id', holder, 'name', name, 'dk', dd.key, 'delay', delay)
    return true
  end
  emit(maxlen, 'e', 'deduplicated', 'id', holder, 'name', name, 'dk', dd.key)
  return false
end

-- Without deduplication every job whose id is blank is created: their ids come
-- from one INCRBY, in order (as one INCR each would give them).
local next_id = nil
local consecutive = false
if m == 0 then
  local blank = 0
  for i = 0, n - 1 do
    if ARGV[first + i * width] == '' then blank = blank + 1 end
  end
  if blank > 0 then next_id = redis.call('INCRBY', K_ID, blank) - blank end
  consecutive = blank == n and n > 1
end
local first_id = consecutive and string.format('%d', next_id + 1)
-- Plain waiting jobs are pushed together at the end, in order, and their
-- 'added' events are one stream entry.
local pushes = {}
local added = new_batch(maxlen, 'added', 'name')

for i = 0, n - 1 do
  local b = first + i * width
  local id, name, data, opts, prio, delay, lifo
  if shared then
    id, data = ARGV[b], ARGV[b + 1]
    name, opts, prio, delay, lifo = s_name, s_opts, s_prio, s_delay, s_lifo
  else
    id, name, data, opts = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
    prio, delay, lifo = ARGV[b + 4], tonumber(ARGV[b + 5]), ARGV[b + 6] == '1'
  end
  local dd = dedup[i + 1]
  local created = 1
  if id ~= '' and redis.call('EXISTS', prefix .. id) == 1 then
    created = 0
  elseif dd then
    local holder = holder_of(ddprefix .. dd.key)
    if holder then
      id, created = holder, 0
      -- A due time moved earlier must reach an idle worker's timer.
      if absorb(holder, dd, name, data, opts, delay) then ready = true end
    end
  end
  if created == 1 then
    if id == '' and next_id then
      next_id = next_id + 1
      id = string.format('%d', next_id) -- tostring would format it as a float
    elseif id == '' then
      id = tostring(redis.call('INCR', K_ID))
    end
    create_job(prefix, id, name, data, opts, prio, delay, lifo, '', now, maxlen, nil, pushes,
      added)
    if dd then
      local ddkey = ddprefix .. dd.key
      redis.call('HSET', prefix .. id, 'dk', dd.key)
      if dd.ttl > 0 then
        redis.call('SET', ddkey, id, 'PX', dd.ttl)
        redis.call('ZADD', K_DEDUP, now + dd.ttl, dd.key)
      else
        redis.call('SET', ddkey, id)
        redis.call('ZADD', K_DEDUP, '+inf', dd.key)
      end
    end
    ready = true
  end
  if not consecutive then
    out[#out + 1] = id
    out[#out + 1] = created
  end
end
push_waiting(pushes)
emit_batch(added)
-- Delayed jobs wake a worker too: it learns the new earliest due time.
if ready and not is_paused() then wake_workers() end
if consecutive then return {first_id, -n} end
return out
