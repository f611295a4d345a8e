-- claim: take up to N jobs for a worker (see includes/claim.lua for the rules).
-- KEYS[1] the queue's base "{prefix:queue}" (includes/common.lua derives its keys).
-- ARGV[1] job key prefix   ARGV[2] events max length   ARGV[3] count
-- ARGV[4] lease ms         ARGV[5] max stalled        ARGV[6] limiter max (0 = none)
-- ARGV[7] limiter window ms   ARGV[8] worker id
-- Returns { next_wake_ms, limited_ms, {stalled_failed_ids}, job... } (includes/claim.lua).
--@include common
--@include recover
--@include claim
local now = server_now()
return claim(ARGV[1], now, tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]),
  tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[2]), ARGV[8])
