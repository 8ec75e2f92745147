"""The Lua script behind ``RedisStateStore.save`` (``stream.redis.state_store``): one partition's
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
-- One command for many members or fields (a call per user took 1.7 times as long). Chunks stay
-- under Lua's stack limit for unpack (8,000) and keep pairs together.
local function bulk(command, key, items)
  for i = 1, #items, 6000 do
    redis.call(command, key, unpack(items, i, math.min(i + 5999, #items)))
  end
end
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
if removed > 0 then
  local users = {}
  for i = 0, removed - 1 do
    redis.call('DEL', KEYS[8 + i])
    users[i + 1] = ARGV[gone + i]
  end
  bulk('ZREM', KEYS[4], users)
  bulk('HDEL', KEYS[6], users)
end
for i = 0, audited - 1 do
  redis.call('RPUSH', KEYS[7], ARGV[gone + removed + i])
end
local scheduled, unscheduled = {}, {}
for i = 0, dues - 1 do
  local user, due = ARGV[11 + 2 * i], ARGV[12 + 2 * i]
  if tonumber(due) > 0 then
    scheduled[#scheduled + 1] = due
    scheduled[#scheduled + 1] = user
  else
    unscheduled[#unscheduled + 1] = user
  end
end
bulk('ZADD', KEYS[4], scheduled)
bulk('ZREM', KEYS[4], unscheduled)
local at = 11 + 2 * dues
for i = 0, deltas - 1 do
  redis.call('HINCRBY', KEYS[5], ARGV[at + 2 * i], ARGV[at + 2 * i + 1])
end
at = at + 2 * deltas
local kept, dropped = {}, {}
for i = 0, labels - 1 do
  local user, packed = ARGV[at + 2 * i], ARGV[at + 2 * i + 1]
  if packed == '' then
    dropped[#dropped + 1] = user
  else
    kept[#kept + 1] = user
    kept[#kept + 1] = packed
  end
end
bulk('HSET', KEYS[6], kept)
bulk('HDEL', KEYS[6], dropped)
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
