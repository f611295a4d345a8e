-- Claim up to `count` jobs for one worker: promote due delayed jobs, recover
-- expired leases, honour pause and the rate limit, then pop prioritised jobs
-- before plain ones. Needs: common.lua, recover.lua
-- Returns { next_wake_ms, limited_ms, {stalled_failed_ids}, job, job, ... }
-- where each job is { id, token, name, data, opts, priority, created, delay,
-- extra, attempts_started } and, for a job claimed before, four more:
-- attempts_made, progress, errors, stalls (a job never claimed has none).
-- next_wake_ms: ms until the next delayed job is due or lease runs out, -1 none.
-- A claimed job's hash records its claimant in `wk`, so a worker whose reply
-- was lost in a network failure can find and hand back what it was given.
-- A job's fields are read in two steps: those any job may have, ending with
-- the fencing token; the fields a claim or an attempt writes only when there
-- is a token (the job ran before): looking for a field a small hash lacks
-- costs a walk over all of it, and most jobs are claimed once.
-- JOB_FIELDS order: the reply's fields, the data's second piece (see job_data
-- in common.lua), the compact options ('kc', see there) and the token.
local JOB_FIELDS = {'n', 'd', 'o', 'p', 't', 'dl', 'x', 'd1', 'kc', 'tk'}
local RUN_FIELDS = {'a', 'as', 'pg', 'er', 's'}

local function promote_due(prefix, now, maxlen)
  local due = redis.call('ZRANGEBYSCORE', K_DELAYED, '-inf', now, 'LIMIT', 0, 1000)
  for _, id in ipairs(due) do
    redis.call('ZREM', K_DELAYED, id)
    enqueue(prefix .. id, id, false)
    emit(maxlen, 'e', 'waiting', 'id', id)
  end
  return #due
end

-- The earliest entry of a sorted set, { member, score } or {} when empty.
local function first_entry(key)
  return redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
end

-- Ms until the next delayed job is due, a lease runs out or a parked group may
-- run again; -1 if none. d, a, g: the first entries of delayed, active and
-- glimited as read earlier in this call when nothing has changed them since
-- (nil: read them now); lease: a deadline this call gave out (nil: none).
local function next_wake(now, d, a, g, lease)
  local best = -1
  d = d or first_entry(K_DELAYED)
  if d[2] then best = math.max(0, tonumber(d[2]) - now) end
  a = a or first_entry(K_ACTIVE)
  local due = a[2] and tonumber(a[2]) or lease
  if due then
    if lease and lease < due then due = lease end
    local w = math.max(0, due - now + 1)
    if best < 0 or w < best then best = w end
  end
  g = g or first_entry(K_GLIMITED)
  if g[2] then
    local w = math.max(0, tonumber(g[2]) - now)
    if best < 0 or w < best then best = w end
  end
  return best
end

-- Take the next job of the group at the head of the ring (round-robin).
local function take_group(now)
  while true do
    local g = redis.call('RPOP', K_GROUPS)
    if not g then return nil end
    local id = redis.call('RPOP', K_GROUP_PREFIX .. g)
    if id then
      redis.call('HINCRBY', K_META, 'gw', -1)
      redis.call('HINCRBY', K_GACTIVE, g, 1)
      local _, max, dur = group_limits(g)
      if max > 0 and redis.call('INCR', K_GRATE_PREFIX .. g) == 1 then
        redis.call('PEXPIRE', K_GRATE_PREFIX .. g, math.max(dur, 1))
      end
      place_group(g, now)
      return id
    end
    redis.call('HDEL', K_GSTATE, g) -- a ring entry left by an emptied group
  end
end

local function take_plain()
  return redis.call('RPOP', K_WAIT) or nil
end

-- Groups whose rate window has passed go back to the ring.
local function unpark_groups(now)
  for _, g in ipairs(redis.call('ZRANGEBYSCORE', K_GLIMITED, '-inf', now, 'LIMIT', 0, 100)) do
    redis.call('ZREM', K_GLIMITED, g)
    if redis.call('HGET', K_GSTATE, g) == 'l' then place_group(g, now) end
  end
end

local function claim(prefix, now, count, lease, max_stalled, lim_max, lim_dur, maxlen, worker)
  -- One read of each set's earliest entry serves both the housekeeping (is
  -- anything due now?) and the next wake-up time; a set changed since is read again.
  local d = first_entry(K_DELAYED)
  if d[2] and tonumber(d[2]) <= now then
    promote_due(prefix, now, maxlen)
    d = nil
  end
  local a = first_entry(K_ACTIVE)
  local stalled_failed = {}
  if a[2] and tonumber(a[2]) <= now then
    stalled_failed = recover_expired(prefix, now, max_stalled, maxlen)
    a = nil
  end
  local out = {0, 0, stalled_failed}
  if count <= 0 or is_paused() then
    out[1] = next_wake(now, d, a)
    return out
  end
  local cur = redis.call('GET', K_LIMITER)
  if cur then
    cur = tonumber(cur)
    if cur >= RATE_LIMITED_FLAG or (lim_max > 0 and cur >= lim_max) then
      local ttl = redis.call('PTTL', K_LIMITER)
      if ttl < 0 then
        -- A counter without a TTL would block the queue for ever.
        redis.call('PEXPIRE', K_LIMITER, math.max(lim_dur, 1))
        ttl = math.max(lim_dur, 1)
      end
      out[1] = next_wake(now, d, a)
      out[2] = ttl
      return out
    end
    if lim_max > 0 then count = math.min(count, lim_max - cur) end
  elseif lim_max > 0 then
    count = math.min(count, lim_max)
  end

  local ids = {}
  local popped = redis.call('ZPOPMIN', K_PRIO, count)
  for i = 1, #popped, 2 do ids[#ids + 1] = popped[i] end
  -- What is known to be empty now needs no look when deciding whether work remains.
  local prio_left = #ids == count
  local g = first_entry(K_GLIMITED)
  if g[2] and tonumber(g[2]) <= now then
    unpark_groups(now)
    g = nil
  end
  local groups = redis.call('LLEN', K_GROUPS)
  local wait_left = true
  if #ids < count and groups == 0 then
    local ask = count - #ids
    local plain = redis.call('RPOP', K_WAIT, ask)
    if plain then
      for _, id in ipairs(plain) do ids[#ids + 1] = id end
    end
    wait_left = plain and #plain == ask
  elseif #ids < count then
    -- Groups waiting: serve them round-robin, and plain jobs as one more group.
    local turn = redis.call('HGET', K_META, 'turn') or 'g'
    while #ids < count do
      local id
      if turn == 'g' then
        id = take_group(now) or take_plain()
      else
        id = take_plain() or take_group(now)
      end
      if not id then break end
      ids[#ids + 1] = id
      turn = (turn == 'g') and 'p' or 'g'
    end
    redis.call('HSET', K_META, 'turn', turn)
    groups, g = nil, nil -- served groups may have been parked again
  end

  local deadline = now + lease
  local now_s, deadline_s = tostring(now), tostring(deadline)
  local claimed = 0
  local leases = {} -- deadline, id, ...: one ZADD for the whole batch
  local active = new_batch(maxlen, 'active', nil, 'w', worker) -- one event entry
  for _, id in ipairs(ids) do
    local jobkey = prefix .. id
    local f = redis.call('HMGET', jobkey, unpack(JOB_FIELDS))
    if f[1] then
      claimed = claimed + 1
      leases[#leases + 1] = deadline_s
      leases[#leases + 1] = id
      local opts = f[3]
      if not opts and f[9] then opts = '{"keep_completed":[' .. f[9] .. ']}' end
      local job = {id, '1', f[1], job_data(f[2], f[8], jobkey), opts, f[4], f[5], f[6], f[7], '1'}
      if f[10] then
        local r = redis.call('HMGET', jobkey, unpack(RUN_FIELDS))
        job[2] = tostring(tonumber(f[10]) + 1)
        job[10] = tostring(tonumber(r[2] or 0) + 1)
        job[11], job[12], job[13], job[14] = r[1], r[3], r[4], r[5]
      end
      -- The new fencing token and attempt count, written with the claim in one HSET
      -- (as strings: a number passed to redis.call costs a printf each time).
      redis.call('HSET', jobkey, 'tk', job[2], 'as', job[10], 'pt', now_s, 'wk', worker)
      out[#out + 1] = job
      add_to_batch(active, id)
    else
      -- The id points at no job hash (deleted by hand): drop it, tell watchers.
      emit(maxlen, 'e', 'error', 'id', id, 'reason', 'job id in queue without a job record')
    end
  end
  if #leases > 0 then call_many('ZADD', K_ACTIVE, leases) end
  emit_batch(active)

  if claimed > 0 and lim_max > 0 then
    if redis.call('INCRBY', K_LIMITER, claimed) == claimed then
      redis.call('PEXPIRE', K_LIMITER, lim_dur)
    end
  end
  if #ids > 0 then
    if (wait_left and redis.call('LLEN', K_WAIT) > 0) or
        (prio_left and redis.call('ZCARD', K_PRIO) > 0) or
        (groups or redis.call('LLEN', K_GROUPS)) > 0 then
      -- More work remains: pass the wake-up on to another idle worker.
      wake_workers()
    else
      emit(maxlen, 'e', 'drained')
    end
  end
  out[1] = next_wake(now, d, a, g, claimed > 0 and deadline or nil)
  return out
end
