-- Shared helpers; included at the top of every script.
-- KEYS[1] (every script): the queue's hash-tagged base "{prefix:queue}". Every
-- key of the queue is derived from it here, so they all share its Cluster slot
-- (jobq.keys.QueueKeys builds the same names). The standard keys:
--   base:wait      LIST  plain job ids (LPUSH in, RPOP out)
--   base:prio      ZSET  prioritised job ids, score priority * 2^32 + order
--   base:delayed   ZSET  id -> due time (server ms)
--   base:active    ZSET  id -> lease deadline (server ms)
--   base:completed ZSET  id -> finished time
--   base:failed    ZSET  id -> finished time
--   base:meta      HASH  paused flag ("paused"), priority order counter ("pc")
--   base:events    STREAM, capped
--   base:marker    ZSET  a single member whose arrival wakes a blocked worker
--   base:limiter   STRING counter of jobs started in the current rate-limit window
--   base:id        STRING counter for generated ids
--   base:mc        HASH  minute -> completed count
--   base:mf        HASH  minute -> failed count
--   base:workers   ZSET  worker id -> alive until (server ms)
-- Scripts that need more keys (the schedulers') take them as KEYS[2], ...
-- Job hash fields: n name, d data, o options, t created, p priority, dl delay,
--   a attempts made, as attempts started, s stall count, tk fencing token,
--   pt processed (claimed) at, ft finished at, rv return value, fr failure
--   reason, er per-attempt errors (JSON), pg progress, x extra fields set by
--   features (JSON object, e.g. the scheduler id and tick), dk deduplication key,
--   d1..d15 further pieces of the data and kc compact options (see DATA_PIECE).

local K_BASE = KEYS[1]
local K_WAIT, K_PRIO = K_BASE .. ':wait', K_BASE .. ':prio'
local K_DELAYED, K_ACTIVE = K_BASE .. ':delayed', K_BASE .. ':active'
local K_COMPLETED, K_FAILED = K_BASE .. ':completed', K_BASE .. ':failed'
local K_META, K_EVENTS, K_MARKER = K_BASE .. ':meta', K_BASE .. ':events', K_BASE .. ':marker'
local K_LIMITER, K_ID = K_BASE .. ':limiter', K_BASE .. ':id'
local K_MC, K_MF, K_WORKERS = K_BASE .. ':mc', K_BASE .. ':mf', K_BASE .. ':workers'
-- Other keys derived from the base:
local K_OUTBOX = K_BASE .. ':outbox' -- LIST: finished children whose parent must hear of it
local K_WAITING_CHILDREN = K_BASE .. ':waiting-children' -- ZSET: parents waiting for children
-- Deduplication: K_DEDUP .. ':' .. key STRING -> job id (PX ttl when given);
-- K_DEDUP itself is the index, ZSET key -> expiry (server ms, +inf: no TTL).
local K_DEDUP = K_BASE .. ':dd'
-- Groups (tenants): each group's waiting jobs in K_GROUP_PREFIX .. group (LIST,
-- LPUSH in, RPOP out); K_GROUPS is the round-robin ring of groups that have
-- waiting jobs and may run (LIST, RPOP takes, LPUSH puts back); K_GSTATE says
-- where a group is: 'r' in the ring, 'c' parked at its concurrency limit,
-- 'l' parked by its rate limit until its score in K_GLIMITED; K_GACTIVE counts
-- running jobs per group; K_GCONF holds limits ('*' the default for all);
-- K_GRATE_PREFIX .. group counts starts in the group's rate window.
local K_GROUPS = K_BASE .. ':groups'
local K_GROUP_PREFIX = K_BASE .. ':g:'
local K_GSTATE = K_BASE .. ':gstate'
local K_GACTIVE = K_BASE .. ':gactive'
local K_GLIMITED = K_BASE .. ':glimited'
local K_GCONF = K_BASE .. ':gconf'
local K_GRATE_PREFIX = K_BASE .. ':grate:'

local RATE_LIMITED_FLAG = 1000000000000000
local PRIO_SHIFT = 4294967296 -- 2^32
local ORDER_MID = 2147483648 -- 2^31

local function server_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Append an event to the capped stream; maxlen 0 turns events off.
local function emit(maxlen, ...)
  if maxlen > 0 then
    redis.call('XADD', K_EVENTS, 'MAXLEN', '~', maxlen, '*', ...)
  end
end

-- The same event of many jobs, written as one stream entry when the batch is
-- emitted (a batch call's 'added', 'active' and 'completed' events): one XADD
-- instead of one per job. The entry holds the ids back to back in 'id' and
-- their byte lengths in 'id#' ("3,1,12"); `field` (optional) is a per-job
-- value stored the same way, with '-' in its lengths for a job without one;
-- `...` are fields shared by every job. A batch of one is a plain entry.
-- jobq._eventwire.expand reads both forms back into one event per job.
-- An entry holds at most EVENT_BATCH_MAX events and, unless one value alone
-- is larger, EVENT_BATCH_BYTES of ids and values (a plain entry may hold a
-- 16 KB return value), and an entry of k events trims the stream to
-- maxlen / k entries: the stream keeps about `maxlen` events, as with one
-- entry per event, and never more bytes than maxlen plain entries could.
local EVENT_BATCH_MAX = 100
local EVENT_BATCH_BYTES = 16384

local function new_batch(maxlen, event, field, ...)
  return {maxlen = maxlen, event = event, field = field, shared = {...}, n = 0, ids = {}, il = {},
    same = nil, nv = 0, vals = {}, vl = {}, bytes = 0, digits = {}}
end

-- A length as a string, memoised per batch: converting a number costs a printf.
local function length_s(b, n)
  local s = b.digits[n]
  if not s then
    s = tostring(n)
    b.digits[n] = s
  end
  return s
end

local function emit_batch(b)
  local n = b.n
  if n == 0 then return end
  local fields
  if n == 1 then
    fields = {'e', b.event, 'id', b.ids[1]}
    if b.same then
      fields[5], fields[6] = b.field, b.same
    elseif b.field and b.vl[1] ~= '-' then
      fields[5], fields[6] = b.field, b.vals[1]
    end
  else
    fields = {'e', b.event, 'id', table.concat(b.ids), 'id#', table.concat(b.il, ',')}
    if b.same then -- every job has the same value: one field shared by all
      fields[7], fields[8] = b.field, b.same
    elseif b.field then
      fields[7], fields[8] = b.field, table.concat(b.vals)
      fields[9], fields[10] = b.field .. '#', table.concat(b.vl, ',')
    end
  end
  for _, v in ipairs(b.shared) do fields[#fields + 1] = v end
  -- An entry of n events trims the stream to maxlen / n entries (see above).
  redis.call('XADD', K_EVENTS, 'MAXLEN', '~', n == 1 and b.maxlen or math.ceil(b.maxlen / n), '*',
    unpack(fields))
  b.n, b.ids, b.il, b.same, b.nv, b.vals, b.vl, b.bytes = 0, {}, {}, nil, 0, {}, {}, 0
end

-- Add one job's event to a batch; `value` (nil: none) is its `field`. While
-- every job of the batch has the same value it is kept once, in b.same.
local function add_to_batch(b, id, value)
  if b.maxlen <= 0 then return end
  local size = #id + (value and #value or 0)
  local n = b.n
  if n >= EVENT_BATCH_MAX or (n > 0 and b.bytes + size > EVENT_BATCH_BYTES) then
    emit_batch(b)
    n = 0
  end
  n = n + 1
  b.n, b.ids[n], b.il[n] = n, id, length_s(b, #id)
  b.bytes = b.bytes + size
  if not b.field then return end
  local same = b.same
  if n == 1 then
    b.same = value or false
    if value then return end
  elseif same then
    if value == same then return end
    -- The first value that differs: the ones before it are written out.
    local len = length_s(b, #same)
    for i = 1, n - 1 do b.vals[i], b.vl[i] = same, len end
    b.nv, b.same = n - 1, false
  end
  if value then
    local nv = b.nv + 1
    b.nv, b.vals[nv], b.vl[n] = nv, value, length_s(b, #value)
  else
    b.vl[n] = '-'
  end
end

-- A group's limits: concurrency, rate max, rate window ms (0 = no limit).
local function group_limits(g)
  local conf = redis.call('HGET', K_GCONF, g) or redis.call('HGET', K_GCONF, '*')
  if not conf then return 0, 0, 0 end
  local c, m, d = string.match(conf, '^(%d+),(%d+),(%d+)$')
  return tonumber(c or 0), tonumber(m or 0), tonumber(d or 0)
end

-- Decide where a group with waiting jobs goes: the ring, or parked.
local function place_group(g, now)
  if redis.call('LLEN', K_GROUP_PREFIX .. g) == 0 then
    redis.call('HDEL', K_GSTATE, g)
    return
  end
  local conc, max = group_limits(g)
  if max > 0 then
    local started = tonumber(redis.call('GET', K_GRATE_PREFIX .. g) or 0)
    local ttl = redis.call('PTTL', K_GRATE_PREFIX .. g)
    if started >= max and ttl > 0 then
      redis.call('HSET', K_GSTATE, g, 'l')
      redis.call('ZADD', K_GLIMITED, now + ttl, g)
      return
    end
  end
  if conc > 0 and tonumber(redis.call('HGET', K_GACTIVE, g) or 0) >= conc then
    redis.call('HSET', K_GSTATE, g, 'c')
    return
  end
  redis.call('HSET', K_GSTATE, g, 'r')
  redis.call('LPUSH', K_GROUPS, g)
  redis.call('ZADD', K_MARKER, 0, '0') -- wake a worker: this group can run
end

-- A grouped job joins its group's list; an idle group joins the ring.
local function enqueue_group(g, id, front)
  if front then
    redis.call('RPUSH', K_GROUP_PREFIX .. g, id)
  else
    redis.call('LPUSH', K_GROUP_PREFIX .. g, id)
  end
  redis.call('HINCRBY', K_META, 'gw', 1)
  if not redis.call('HGET', K_GSTATE, g) then
    redis.call('HSET', K_GSTATE, g, 'r')
    redis.call('LPUSH', K_GROUPS, g)
  end
end

-- After a grouped job left its group's list by hand (remove, drain, clean):
-- forget a group that has nothing left waiting.
local function group_forget_if_empty(g)
  if redis.call('LLEN', K_GROUP_PREFIX .. g) == 0 and redis.call('HDEL', K_GSTATE, g) == 1 then
    redis.call('LREM', K_GROUPS, 0, g)
    redis.call('ZREM', K_GLIMITED, g)
  end
end

-- A grouped job left active: free its slot, and a parked group may run again.
-- g: the job's field 'g' when the caller has read it already (false: none).
local function group_left_active(jobkey, now, g)
  if g == nil then g = redis.call('HGET', jobkey, 'g') end
  if not g then return end
  if redis.call('HINCRBY', K_GACTIVE, g, -1) <= 0 then redis.call('HDEL', K_GACTIVE, g) end
  if redis.call('HGET', K_GSTATE, g) == 'c' then place_group(g, now) end
end

-- Put a job where a worker will find it: its group's list, the priority set or
-- the wait list. front=true serves it next. prio and g as the job hash holds
-- them (nil: none). With `pushes`, a plain job's id is only appended there (the
-- caller pushes them all with push_waiting).
local function enqueue_as(id, prio, g, front, pushes)
  if g then
    enqueue_group(g, id, front)
  elseif prio then
    local c = redis.call('HINCRBY', K_META, 'pc', 1) % ORDER_MID
    local order = front and (ORDER_MID - c) or (ORDER_MID + c)
    redis.call('ZADD', K_PRIO, tonumber(prio) * PRIO_SHIFT + order, id)
  elseif front then
    redis.call('RPUSH', K_WAIT, id)
  elseif pushes then
    pushes[#pushes + 1] = id
  else
    redis.call('LPUSH', K_WAIT, id)
  end
end

-- Put a waiting job where a worker claims it, as its hash says.
local function enqueue(jobkey, id, front)
  local pg = redis.call('HMGET', jobkey, 'p', 'g')
  enqueue_as(id, pg[1], pg[2], front)
end

-- LPUSH ids gathered by enqueue_as, in their order (as one LPUSH each would).
local function push_waiting(pushes)
  for i = 1, #pushes, 4000 do
    redis.call('LPUSH', K_WAIT, unpack(pushes, i, math.min(i + 3999, #pushes)))
  end
end

local function wake_workers()
  redis.call('ZADD', K_MARKER, 0, '0')
end

local function is_paused()
  return redis.call('HEXISTS', K_META, 'paused') == 1
end

-- Delete a job and its side keys; with `into`, only add the keys to that list
-- (for one DEL of a whole batch, see call_many).
local function delete_job(prefix, id, into)
  local jobkey = prefix .. id
  if into then
    local n = #into
    into[n + 1], into[n + 2], into[n + 3] = jobkey, jobkey .. ':logs', jobkey .. ':deps'
    into[n + 4], into[n + 5] = jobkey .. ':processed', jobkey .. ':failed'
    return
  end
  redis.call('DEL', jobkey, jobkey .. ':logs', jobkey .. ':deps', jobkey .. ':processed',
    jobkey .. ':failed')
end

-- Run `cmd key member...` (or `cmd key score member ...`, or `cmd key...` with
-- key nil) over a long list in slices that unpack() can take.
-- (Every script runs all of these definitions on each call: a top-level function
-- or loop costs every call, so helpers that serve one script live in it.)
local function call_many(cmd, key, args)
  local step = 4000
  for i = 1, #args, step do
    local j = math.min(#args, i + step - 1)
    if key then
      redis.call(cmd, key, unpack(args, i, j))
    else
      redis.call(cmd, unpack(args, i, j))
    end
  end
end

-- Count finished jobs per minute for a bounded window of minutes.
local function count_minute(key, now, n, window)
  if n <= 0 or window <= 0 then return end
  local minute = math.floor(now / 60000)
  -- The hash grows only when a minute's field is new: look at its size then.
  if redis.call('HINCRBY', key, minute, n) == n and redis.call('HLEN', key) > window + 5 then
    local fields = redis.call('HKEYS', key)
    for _, f in ipairs(fields) do
      if tonumber(f) <= minute - window then redis.call('HDEL', key, f) end
    end
  end
end

-- Trim a finished set to its retention: count (-1 = any), age ms (-1 = any).
local function keep_trim(setkey, prefix, now, count, age)
  if count > 0 then
    local over = redis.call('ZCARD', setkey) - count
    if over > 0 then
      local old = redis.call('ZRANGE', setkey, 0, over - 1)
      for _, id in ipairs(old) do delete_job(prefix, id) end
      redis.call('ZREMRANGEBYRANK', setkey, 0, over - 1)
    end
  end
  if age > 0 then
    local old = redis.call('ZRANGEBYSCORE', setkey, '-inf', now - age, 'LIMIT', 0, 100)
    if #old > 0 then
      for _, id in ipairs(old) do delete_job(prefix, id) end
      redis.call('ZREM', setkey, unpack(old))
    end
  end
end

-- Free a job's deduplication key if it still points to this job. Unless
-- forced (the job is being deleted), a key with a TTL holds for all of it.
-- dk: the job's field 'dk' when the caller has read it already (false: none).
local function release_dedup(jobkey, id, force, dk)
  if dk == nil then dk = redis.call('HGET', jobkey, 'dk') end
  if not dk then return end
  local key = K_DEDUP .. ':' .. dk
  if redis.call('GET', key) ~= id then return end
  if not force and redis.call('PTTL', key) ~= -1 then return end
  redis.call('DEL', key)
  redis.call('ZREM', K_DEDUP, dk)
end

-- Record a finished job in its set (or delete it at once), then trim the set.
-- finish.lua passes what it has read or written already (the others leave them
-- nil): x and dk (the job's fields, false when absent), v (its return value or
-- failure reason), dels (a list collecting the keys to delete, for one DEL at
-- the end) and sets (the additions to the finished sets, made at the end too).
local function finish_into(setkey, prefix, id, now, count, age, x, dk, v, dels, sets)
  -- A child of a flow: leave word for its parent (delivered by a worker, since
  -- the parent's queue may live on another Cluster slot).
  local jobkey = prefix .. id
  if x == nil then x = redis.call('HGET', jobkey, 'x') end
  if x and string.find(x, '"parent"', 1, true) then
    local failed = setkey == K_FAILED
    v = v or redis.call('HGET', jobkey, failed and 'fr' or 'rv') or ''
    redis.call('RPUSH', K_OUTBOX, cjson.encode({id = id, k = failed and 'f' or 'c', v = v, x = x}))
  end
  release_dedup(jobkey, id, false, dk)
  if count == 0 then
    delete_job(prefix, id, dels)
  elseif sets then
    -- Batched: finish.lua adds the whole batch and trims each set once per
    -- retention (sets[setkey] = {members = {score, id, ...}, trims = {{count, age}...}}).
    local s = sets[setkey]
    if not s then
      s = {members = {}, trims = {}}
      sets[setkey] = s
      sets[#sets + 1] = setkey
    end
    local m = s.members
    m[#m + 1] = now
    m[#m + 1] = id
    local trims = s.trims
    for _, t in ipairs(trims) do
      if t[1] == count and t[2] == age then return end
    end
    trims[#trims + 1] = {count, age}
  else
    redis.call('ZADD', setkey, now, id)
    keep_trim(setkey, prefix, now, count, age)
  end
end

-- A job's data is kept in pieces of at most DATA_PIECE bytes, in fields 'd',
-- 'd1', 'd2'... when the job's other fields are short too: then the whole hash
-- fits the server's compact listpack encoding (hash-max-listpack-value, 64 by
-- default), about half the memory of a hashtable for a small job. Longer data
-- stays whole in 'd'. Readers join the pieces (job_data here, jobq.job.join_data).
-- Options that say only how many completed jobs to keep (remove_on_complete,
-- the common case) are kept as 'kc' "count,age" instead of 'o', a few bytes
-- instead of 27; the claim (and jobq.job.stored_options) give them back byte
-- for byte.
local DATA_PIECE = 64
local DATA_PIECES_MAX = 16
-- The pieces' field names, written out: 'd' .. i would format a number each time.
local PIECE_FIELDS = {[0] = 'd', 'd1', 'd2', 'd3', 'd4', 'd5', 'd6', 'd7', 'd8', 'd9', 'd10', 'd11',
  'd12', 'd13', 'd14', 'd15'}

-- Put the fields storing `data` in `fields` (field, value, ...) after its
-- first `k` entries; returns the new count.
local function add_data_fields(fields, k, data, split)
  local n = #data
  if not split or n <= DATA_PIECE or n > DATA_PIECE * DATA_PIECES_MAX then
    fields[k + 1], fields[k + 2] = 'd', data
    return k + 2
  end
  if n <= DATA_PIECE * 2 then -- the usual small payload: two pieces
    fields[k + 1], fields[k + 2] = 'd', string.sub(data, 1, DATA_PIECE)
    fields[k + 3], fields[k + 4] = 'd1', string.sub(data, DATA_PIECE + 1)
    return k + 4
  end
  for i = 0, math.ceil(n / DATA_PIECE) - 1 do
    fields[k + 1], fields[k + 2] = PIECE_FIELDS[i],
      string.sub(data, i * DATA_PIECE + 1, (i + 1) * DATA_PIECE)
    k = k + 2
  end
  return k
end

-- A job's data from its fields 'd' and 'd1' as the caller read them; further
-- pieces, if any, are read here.
local function job_data(d, d1, jobkey)
  if not d1 then return d end
  if #d1 < DATA_PIECE then return d .. d1 end
  local parts = {d, d1}
  local more = redis.call('HMGET', jobkey, 'd2', 'd3', 'd4', 'd5', 'd6', 'd7', 'd8', 'd9', 'd10',
    'd11', 'd12', 'd13', 'd14', 'd15')
  for _, p in ipairs(more) do
    if not p then break end
    parts[#parts + 1] = p
  end
  return table.concat(parts)
end

-- Create a job: write its hash and put it in delayed or waiting.
-- extra: '' or a JSON object kept in field 'x' (handed to the worker at claim).
-- children: optional list of child job keys; when given, the job waits in
-- waiting-children until every child has finished (see child_done.lua).
-- pushes: optional list that collects plain waiting ids (see enqueue_as).
-- Returns nothing; the caller wakes workers once for a whole batch.
-- What create_job makes of the options string and of `now`, kept for the next
-- job of a batch, which usually has the same (a string compares by identity).
local seen_opts, seen_kc, seen_group, seen_now, seen_now_s = nil, nil, nil, nil, nil

local function create_job(prefix, id, name, data, opts, prio, delay, lifo, extra, now, maxlen,
                          children, pushes, added)
  local jobkey = prefix .. id
  if now ~= seen_now then seen_now, seen_now_s = now, tostring(now) end
  -- Sized for the usual fields up front: growing a table rehashes it.
  local fields = {'n', name, 't', seen_now_s, false, false, false, false, false, false}
  -- Pieces only help while every other field fits the listpack limit too.
  local k = add_data_fields(fields, 4, data, #name <= DATA_PIECE and #opts <= DATA_PIECE and
    #extra <= DATA_PIECE)
  if opts ~= seen_opts then
    seen_opts = opts
    seen_kc = opts ~= '' and string.match(opts, '^{"keep_completed":%[(%-?%d+,%-?%d+)%]}$')
    seen_group = opts ~= '' and string.find(opts, '"group"', 1, true)
  end
  local kc = seen_kc
  if kc then
    fields[k + 1], fields[k + 2], k = 'kc', kc, k + 2
  elseif opts ~= '' then
    fields[k + 1], fields[k + 2], k = 'o', opts, k + 2
  end
  if prio ~= '' then fields[k + 1], fields[k + 2], k = 'p', prio, k + 2 end
  if delay > 0 then fields[k + 1], fields[k + 2], k = 'dl', delay, k + 2 end
  if extra ~= '' then fields[k + 1], fields[k + 2], k = 'x', extra, k + 2 end
  local group = nil
  if seen_group then
    local g = cjson.decode(opts)['group']
    if type(g) == 'string' then group = g; fields[k + 1], fields[k + 2], k = 'g', g, k + 2 end
  end
  redis.call('HSET', jobkey, unpack(fields, 1, k))
  if children and #children > 0 then
    redis.call('SADD', jobkey .. ':deps', unpack(children))
    redis.call('ZADD', K_WAITING_CHILDREN, now, id)
    emit(maxlen, 'e', 'waiting-children', 'id', id, 'name', name)
  elseif delay > 0 then
    redis.call('ZADD', K_DELAYED, now + delay, id)
    emit(maxlen, 'e', 'delayed', 'id', id, 'name', name, 'delay', delay)
  else
    enqueue_as(id, prio ~= '' and prio or nil, group, lifo, pushes)
    if added then
      add_to_batch(added, id, name)
    else
      emit(maxlen, 'e', 'added', 'id', id, 'name', name)
    end
  end
end
