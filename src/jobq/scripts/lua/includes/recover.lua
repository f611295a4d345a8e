-- Hand jobs whose lease ran out back to waiting, or fail them after too many
-- stalls. Returns the ids failed here (their failed-job hooks must run).
-- Needs: common.lua
local function recover_expired(prefix, now, max_stalled, maxlen)
  local expired = redis.call('ZRANGEBYSCORE', K_ACTIVE, '-inf', now, 'LIMIT', 0, 100)
  local failed = {}
  local requeued = false
  for _, id in ipairs(expired) do
    local jobkey = prefix .. id
    redis.call('ZREM', K_ACTIVE, id)
    if redis.call('EXISTS', jobkey) == 1 then
      group_left_active(jobkey, now)
      -- A new token fences off the worker that lost the lease.
      redis.call('HINCRBY', jobkey, 'tk', 1)
      local stalls = redis.call('HINCRBY', jobkey, 's', 1)
      if stalls > max_stalled then
        local reason = 'job stalled more than the allowed ' .. max_stalled .. ' time(s): ' ..
          'its worker stopped renewing the lease (crashed, killed or blocked)'
        redis.call('HINCRBY', jobkey, 'a', 1)
        redis.call('HSET', jobkey, 'fr', reason, 'ft', now)
        local count, age = -1, -1
        local opts = redis.call('HGET', jobkey, 'o')
        if opts then
          local kf = cjson.decode(opts)['keep_failed']
          if kf then count, age = tonumber(kf[1]), tonumber(kf[2]) end
        end
        finish_into(K_FAILED, prefix, id, now, count, age)
        emit(maxlen, 'e', 'failed', 'id', id, 'reason', reason)
        failed[#failed + 1] = id
      else
        enqueue(jobkey, id, true)
        requeued = true
        emit(maxlen, 'e', 'stalled', 'id', id)
      end
    end
  end
  if requeued then wake_workers() end
  return failed
end
