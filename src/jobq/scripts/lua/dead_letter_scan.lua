-- dead_letter_scan: one bounded batch of a filtered walk over the entry index.
-- Reads only: the caller walks on with the next offset until a batch comes
-- back short, so no single call blocks the server for long.
-- KEYS[1] the queue's base "{prefix:queue}" (includes/common.lua derives its keys);
--   the entry index "{prefix:queue}:dead-letters" is derived from the same base.
-- ARGV[1] job key prefix
-- ARGV[2] earliest original failure time (ms, or '-inf')
-- ARGV[3] latest original failure time (ms, or '+inf')
-- ARGV[4] offset into the index range   ARGV[5] batch size (index members read)
-- ARGV[6] '1' newest failure first, '0' oldest first
-- ARGV[7] original queue ('' = any)   ARGV[8] job name ('' = any)
-- ARGV[9] text the errors must contain, case-sensitive ('' = any)
-- Returns { members read, matching entry id, ... }; fewer members read than
-- the batch size means the range ends here. Index members without an entry
-- (deleted by other means) never match.
--@include common
local prefix, lo, hi = ARGV[1], ARGV[2], ARGV[3]
local offset, batch = tonumber(ARGV[4]), tonumber(ARGV[5])
local want_queue, want_name, want_text = ARGV[7], ARGV[8], ARGV[9]
local index = string.sub(K_WAIT, 1, -6) .. ':dead-letters'
local ids
if ARGV[6] == '1' then
  ids = redis.call('ZREVRANGEBYSCORE', index, hi, lo, 'LIMIT', offset, batch)
else
  ids = redis.call('ZRANGEBYSCORE', index, lo, hi, 'LIMIT', offset, batch)
end
local out = {#ids}
for _, id in ipairs(ids) do
  local f = redis.call('HMGET', prefix .. id, 'dq', 'n', 'de')
  if f[1] and (want_queue == '' or f[1] == want_queue) and (want_name == '' or f[2] == want_name)
    and (want_text == '' or (f[3] and string.find(f[3], want_text, 1, true))) then
    out[#out + 1] = id
  end
end
return out
