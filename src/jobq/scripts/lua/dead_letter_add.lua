-- dead_letter_add: file a job that failed for good as an entry of this
-- (dead-letter) queue, or bring an existing entry up to date with a newer
-- failure of the same job. The first of the two routing steps; the second,
-- dead_letter_release, runs on the original queue (another Cluster slot).
-- KEYS[1] the queue's base "{prefix:queue}" (includes/common.lua derives its keys);
--   the entry index "{prefix:queue}:dead-letters" (ZSET entry id -> original failure time) is
--   derived from the same hash-tagged base, so it shares the slot.
-- ARGV[1] job key prefix   ARGV[2] events max length   ARGV[3] entry id
-- ARGV[4] job name         ARGV[5] entry data JSON      ARGV[6] entry options JSON
-- ARGV[7] original prefix  ARGV[8] original queue       ARGV[9] original job id
-- ARGV[10] original failure time (ms; its score in the original failed set)
-- ARGV[11] error text (failure reason and every attempt's error, for filters)
-- ARGV[12] '1': an existing entry must be of this very job id; '0': of any job
--   of the original queue (a replayed job carrying its entry id)
-- Entry fields besides a job's own: dq original queue, dp original prefix,
--   di original job id, df original failure time, de error text,
--   dt dead-lettered at (server ms), dc replay count, dr replay history (JSON).
-- Returns 1 created, 2 updated with a newer failure, 0 this very failure is
--   filed already (nothing written), -5 the entry id belongs to another job
--   (nothing written).
--@include common
local prefix, maxlen, id = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local oprefix, oqueue, oid, ofailed = ARGV[7], ARGV[8], ARGV[9], tonumber(ARGV[10])
local index = string.sub(K_WAIT, 1, -6) .. ':dead-letters'
local jobkey = prefix .. id
local now = server_now()
if redis.call('EXISTS', jobkey) == 1 then
  local f = redis.call('HMGET', jobkey, 'dq', 'dp', 'di', 'df')
  if f[1] ~= oqueue or f[2] ~= oprefix or (ARGV[12] == '1' and f[3] ~= oid) then
    return -5
  end
  if tonumber(f[4]) == ofailed then return 0 end
  -- The entry's data may be stored in pieces (see DATA_PIECE): drop them all,
  -- and keep the new data whole.
  redis.call('HDEL', jobkey, 'd1', 'd2', 'd3', 'd4', 'd5', 'd6', 'd7', 'd8', 'd9', 'd10', 'd11',
    'd12', 'd13', 'd14', 'd15')
  redis.call('HSET', jobkey, 'n', ARGV[4], 'd', ARGV[5], 'di', oid, 'df', ofailed,
    'de', ARGV[11], 'dt', now)
  redis.call('ZADD', index, ofailed, id)
  -- A consumer of this queue saw the old failure: show it the new one.
  if redis.call('ZREM', K_COMPLETED, id) + redis.call('ZREM', K_FAILED, id) > 0 then
    redis.call('HSET', jobkey, 'a', 0, 'as', 0, 's', 0)
    redis.call('HDEL', jobkey, 'ft', 'fr', 'rv', 'pg', 'er')
    enqueue(jobkey, id, false)
    if not is_paused() then wake_workers() end
  end
  emit(maxlen, 'e', 'dead-letter-updated', 'id', id, 'queue', oqueue, 'job', oid)
  return 2
end
create_job(prefix, id, ARGV[4], ARGV[5], ARGV[6], '', 0, false, '', now, maxlen)
redis.call('HSET', jobkey, 'dq', oqueue, 'dp', oprefix, 'di', oid, 'df', ofailed,
  'de', ARGV[11], 'dt', now)
redis.call('ZADD', index, ofailed, id)
if not is_paused() then wake_workers() end
return 1
