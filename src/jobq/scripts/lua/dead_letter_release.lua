-- dead_letter_release: delete a failed job once its dead-letter entry exists.
-- The second of the two routing steps (see dead_letter_add). It acts only
-- when the job is still the very failure the entry was made from, so a job
-- retried, removed or failed again since is left alone.
-- KEYS[1] the queue's base "{prefix:queue}" (includes/common.lua derives its keys).
-- ARGV[1] job key prefix   ARGV[2] events max length   ARGV[3] job id
-- ARGV[4] failure time the entry was made from (ms; the job's failed score)
-- ARGV[5] the dead-letter queue's name (for the event)
-- Returns 1 deleted, 0 left alone (not failed, or failed at another time).
--@include common
local prefix, id = ARGV[1], ARGV[3]
local score = redis.call('ZSCORE', K_FAILED, id)
if not score or tonumber(score) ~= tonumber(ARGV[4]) then return 0 end
redis.call('ZREM', K_FAILED, id)
delete_job(prefix, id)
emit(tonumber(ARGV[2]), 'e', 'dead-lettered', 'id', id, 'dlq', ARGV[5])
return 1
