-- extend: renew the leases of a worker's running jobs (the heartbeat), and
-- recover jobs whose leases ran out elsewhere.
-- KEYS[1] the queue's base "{prefix:queue}" (includes/common.lua derives its keys).
-- ARGV[1] job key prefix   ARGV[2] events max length   ARGV[3] lease ms
-- ARGV[4] max stalled      ARGV[5] worker id (registered as alive for one lease)
-- ARGV[6] N, then N pairs: id, fencing token
-- Returns { {1 renewed | 0 lost, per job}, {stalled_failed_ids} }.
--@include common
--@include recover
local prefix, maxlen, lease = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local n = tonumber(ARGV[6])
local now = server_now()
redis.call('ZADD', K_WORKERS, now + lease, ARGV[5])
redis.call('ZREMRANGEBYSCORE', K_WORKERS, '-inf', now - 86400000)
local res = {}
for i = 0, n - 1 do
  local id, token = ARGV[7 + i * 2], ARGV[8 + i * 2]
  if redis.call('ZSCORE', K_ACTIVE, id) and redis.call('HGET', prefix .. id, 'tk') == token then
    redis.call('ZADD', K_ACTIVE, 'XX', now + lease, id)
    res[#res + 1] = 1
  else
    res[#res + 1] = 0
  end
end
local failed = recover_expired(prefix, now, tonumber(ARGV[4]), maxlen)
return {res, failed}
