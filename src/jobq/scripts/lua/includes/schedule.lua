-- Helpers of the job-scheduler scripts: the one pending job of a scheduler's
-- tick, with the deterministic id 'sched:<scheduler id>:<tick ms>'.
-- Needs: common.lua (create_job, delete_job, emit and the standard KEYS).
-- Returns (helpers): tick_job_id -> the id; add_tick_job -> true when it
-- created the job (false: a job with that id exists); drop_pending -> 1
-- removed (it was delayed or waiting), 0 no such job, -1 a worker holds it or
-- it has finished (left alone).

local function tick_job_id(sid, tick)
  return 'sched:' .. sid .. ':' .. tick
end

-- Create the job of tick `tick` (a decimal string, server ms) from the
-- template in the scheduler's hash, due at the tick itself (at once if past).
local function add_tick_job(schkey, prefix, sid, tick, now, maxlen)
  local id = tick_job_id(sid, tick)
  if redis.call('EXISTS', prefix .. id) == 1 then return false end
  local t = redis.call('HMGET', schkey, 'n', 'd', 'o', 'p', 'l')
  local delay = math.max(0, tonumber(tick) - now)
  local extra = '{"sid":' .. cjson.encode(sid) .. ',"tick":' .. tick .. '}'
  create_job(prefix, id, t[1], t[2], t[3] or '', t[4] or '', delay, t[5] == '1', extra, now, maxlen)
  return true
end

-- Remove the pending job of tick `tick` unless a worker holds it already.
local function drop_pending(prefix, sid, tick, maxlen)
  local id = tick_job_id(sid, tick)
  if redis.call('EXISTS', prefix .. id) == 0 then return 0 end
  local gone = redis.call('ZREM', K_DELAYED, id) + redis.call('ZREM', K_PRIO, id)
  if gone == 0 then gone = redis.call('LREM', K_WAIT, 1, id) end
  if gone == 0 then return -1 end
  delete_job(prefix, id)
  emit(maxlen, 'e', 'removed', 'id', id)
  return 1
end
