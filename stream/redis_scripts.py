"""The Lua script behind ``RedisStateStore.save`` (``stream.redis_store``): one partition's
batch written atomically, fenced by the owner token."""

# Writes a partition's users, due index, watermark and next offset in one atomic step, only for
# the owner's token, and only if the stored offset is not already past the batch (then it was
# applied: return -1). Removed users go first, so one back in the same batch keeps the rest.
# KEYS: owner, offset, watermark, due, segments, labels, erasures, removed users' keys...,
#       user keys...
# ARGV: token, first offset, next offset, ttl seconds (0: none), watermark, number of dues,
#       number of segment deltas, number of label entries, number of removed users, number of
#       audit entries, (user, due) pairs..., (segment, delta) pairs..., (user, labels)
#       pairs..., removed users..., audit entries..., user values..., and last "1" if an
#       offset was stored before (its absence then means the store lost data).
SAVE_SCRIPT = """
local owner = redis.call('GET', KEYS[1])
if owner == false then
  return redis.error_reply('LOST the owner token vanished')
end
if owner ~= ARGV[1] then
  return redis.error_reply('FENCED partition has another owner')
end
local stored = redis.call('GET', KEYS[2])
if stored == false and ARGV[#ARGV] == '1' then
  return redis.error_reply('LOST the saved offset vanished')
end
if stored and tonumber(stored) > tonumber(ARGV[2]) then
  return -1
end
local ttl = tonumber(ARGV[4])
local dues, deltas, labels = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local removed, audited = tonumber(ARGV[9]), tonumber(ARGV[10])
local gone = 11 + 2 * (dues + deltas + labels)
for i = 0, removed - 1 do
  redis.call('DEL', KEYS[8 + i])
  redis.call('ZREM', KEYS[4], ARGV[gone + i])
  redis.call('HDEL', KEYS[6], ARGV[gone + i])
end
for i = 0, audited - 1 do
  redis.call('RPUSH', KEYS[7], ARGV[gone + removed + i])
end
for i = 0, dues - 1 do
  local user, due = ARGV[11 + 2 * i], tonumber(ARGV[12 + 2 * i])
  if due > 0 then
    redis.call('ZADD', KEYS[4], due, user)
  else
    redis.call('ZREM', KEYS[4], user)
  end
end
local at = 11 + 2 * dues
for i = 0, deltas - 1 do
  redis.call('HINCRBY', KEYS[5], ARGV[at + 2 * i], ARGV[at + 2 * i + 1])
end
at = at + 2 * deltas
for i = 0, labels - 1 do
  local user, packed = ARGV[at + 2 * i], ARGV[at + 2 * i + 1]
  if packed == '' then
    redis.call('HDEL', KEYS[6], user)
  else
    redis.call('HSET', KEYS[6], user, packed)
  end
end
local first = 8 + removed
local values = gone + removed + audited - first
for i = first, #KEYS do
  if ttl > 0 then
    redis.call('SET', KEYS[i], ARGV[values + i], 'EX', ttl)
  else
    redis.call('SET', KEYS[i], ARGV[values + i])
  end
end
redis.call('SET', KEYS[3], ARGV[5])
redis.call('SET', KEYS[2], ARGV[3])
return #KEYS - first + 1
"""
