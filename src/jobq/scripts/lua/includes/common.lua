-- Shared helpers; included at the top of every script.
-- KEYS (the same, in this order, for every script):
--   1 wait      LIST  plain job ids (LPUSH in, RPOP out)
--   2 prio      ZSET  prioritised job ids, score priority * 2^32 + order
--   3 delayed   ZSET  id -> due time (server ms)
--   4 active    ZSET  id -> lease deadline (server ms)
--   5 completed ZSET  id -> finished time
--   6 failed    ZSET  id -> finished time
--   7 meta      HASH  paused flag ("paused"), priority order counter ("pc")
--   8 events    STREAM, capped
--   9 marker    ZSET  a single member whose arrival wakes a blocked worker
--  10 limiter   STRING counter of jobs started in the current rate-limit window
--  11 id        STRING counter for generated ids
--  12 mc        HASH  minute -> completed count
--  13 mf        HASH  minute -> failed count
--  14 workers   ZSET  worker id -> alive until (server ms)
-- Job hash fields: n name, d data, o options, t created, p priority, dl delay,
--   a attempts made, as attempts started, s stall count, tk fencing token,
--   pt processed (claimed) at, ft finished at, rv return value, fr failure
--   reason, er per-attempt errors (JSON), pg progress, x extra fields set by
--   features (JSON object, e.g. the scheduler id and tick), dk deduplication key.

local K_WAIT, K_PRIO, K_DELAYED, K_ACTIVE = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local K_COMPLETED, K_FAILED, K_META, K_EVENTS = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local K_MARKER, K_LIMITER, K_ID, K_MC, K_MF = KEYS[9], KEYS[10], KEYS[11], KEYS[12], KEYS[13]
local K_WORKERS = KEYS[14]
-- Keys derived from the queue's hash-tagged base (so they share its slot).
local K_BASE = string.sub(K_WAIT, 1, -6) -- strip ':wait'
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
local function group_left_active(jobkey, now)
  local g = redis.call('HGET', jobkey, 'g')
  if not g then return end
  if redis.call('HINCRBY', K_GACTIVE, g, -1) <= 0 then redis.call('HDEL', K_GACTIVE, g) end
  if redis.call('HGET', K_GSTATE, g) == 'c' then place_group(g, now) end
end

-- Put a job where a worker will find it. front=true serves it next.
local function enqueue(jobkey, id, front)
  local pg = redis.call('HMGET', jobkey, 'p', 'g')
  local prio = pg[1]
  if pg[2] then
    enqueue_group(pg[2], id, front)
  elseif prio then
    local c = redis.call('HINCRBY', K_META, 'pc', 1) % ORDER_MID
    local order = front and (ORDER_MID - c) or (ORDER_MID + c)
    redis.call('ZADD', K_PRIO, tonumber(prio) * PRIO_SHIFT + order, id)
  elseif front then
    redis.call('RPUSH', K_WAIT, id)
  else
    redis.call('LPUSH', K_WAIT, id)
  end
end

local function wake_workers()
  redis.call('ZADD', K_MARKER, 0, '0')
end

local function is_paused()
  return redis.call('HEXISTS', K_META, 'paused') == 1
end

local function delete_job(prefix, id)
  local jobkey = prefix .. id
  redis.call('DEL', jobkey, jobkey .. ':logs', jobkey .. ':deps', jobkey .. ':processed',
    jobkey .. ':failed')
end

-- Count finished jobs per minute for a bounded window of minutes.
local function count_minute(key, now, n, window)
  if n <= 0 or window <= 0 then return end
  local minute = math.floor(now / 60000)
  redis.call('HINCRBY', key, minute, n)
  if redis.call('HLEN', key) > window + 5 then
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
local function release_dedup(jobkey, id, force)
  local dk = redis.call('HGET', jobkey, 'dk')
  if not dk then return end
  local key = K_DEDUP .. ':' .. dk
  if redis.call('GET', key) ~= id then return end
  if not force and redis.call('PTTL', key) ~= -1 then return end
  redis.call('DEL', key)
  redis.call('ZREM', K_DEDUP, dk)
end

-- Record a finished job in its set (or delete it at once), then trim the set.
local function finish_into(setkey, prefix, id, now, count, age)
  -- A child of a flow: leave word for its parent (delivered by a worker, since
  -- the parent's queue may live on another Cluster slot).
  local jobkey = prefix .. id
  local x = redis.call('HGET', jobkey, 'x')
  if x and string.find(x, '"parent"', 1, true) then
    local failed = setkey == K_FAILED
    local v = redis.call('HGET', jobkey, failed and 'fr' or 'rv') or ''
    redis.call('RPUSH', K_OUTBOX, cjson.encode({id = id, k = failed and 'f' or 'c', v = v, x = x}))
  end
  release_dedup(jobkey, id, false)
  if count == 0 then
    delete_job(prefix, id)
  else
    redis.call('ZADD', setkey, now, id)
    keep_trim(setkey, prefix, now, count, age)
  end
end

-- Create a job: write its hash and put it in delayed or waiting.
-- extra: '' or a JSON object kept in field 'x' (handed to the worker at claim).
-- children: optional list of child job keys; when given, the job waits in
-- waiting-children until every child has finished (see child_done.lua).
-- Returns nothing; the caller wakes workers once for a whole batch.
local function create_job(prefix, id, name, data, opts, prio, delay, lifo, extra, now, maxlen,
                          children)
  local jobkey = prefix .. id
  local fields = {'n', name, 'd', data, 't', now}
  if opts ~= '' then fields[#fields + 1] = 'o'; fields[#fields + 1] = opts end
  if prio ~= '' then fields[#fields + 1] = 'p'; fields[#fields + 1] = prio end
  if delay > 0 then fields[#fields + 1] = 'dl'; fields[#fields + 1] = delay end
  if extra ~= '' then fields[#fields + 1] = 'x'; fields[#fields + 1] = extra end
  if opts ~= '' and string.find(opts, '"group"', 1, true) then
    local group = cjson.decode(opts)['group']
    if type(group) == 'string' then fields[#fields + 1] = 'g'; fields[#fields + 1] = group end
  end
  redis.call('HSET', jobkey, unpack(fields))
  if children and #children > 0 then
    redis.call('SADD', jobkey .. ':deps', unpack(children))
    redis.call('ZADD', K_WAITING_CHILDREN, now, id)
    emit(maxlen, 'e', 'waiting-children', 'id', id, 'name', name)
  elseif delay > 0 then
    redis.call('ZADD', K_DELAYED, now + delay, id)
    emit(maxlen, 'e', 'delayed', 'id', id, 'name', name, 'delay', delay)
  else
    enqueue(jobkey, id, lifo)
    emit(maxlen, 'e', 'added', 'id', id, 'name', name)
  end
end
