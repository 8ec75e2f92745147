"""The Lua scripts of ``stream.redis.state_store``: a partition's batch written atomically,
fenced by the owner token, and its users' records and labels read.

A list of many values travels as one argument and the byte sizes of its items ("framed"):
packing an argument per user cost the client more than the rest of the save or load.
"""

# Splits a framed list: ``framed(blob, "3,0,5")`` is the blob's first 3 bytes, "", the next 5.
_FRAMED = """
local function framed(blob, sizes)
  local items, at = {}, 1
  for size in string.gmatch(sizes, '%d+') do
    local after = at + tonumber(size)
    items[#items + 1] = string.sub(blob, at, after - 1)
    at = after
  end
  return items
end
"""

# The owner token, the stored offset, and each user's record (false: none).
# KEYS: owner, offset. ARGV: the prefix of the user keys, the users (framed).
LOAD_SCRIPT = (
    _FRAMED
    + """
local found = {redis.call('GET', KEYS[1]), redis.call('GET', KEYS[2])}
for _, user in ipairs(framed(ARGV[2], ARGV[3])) do
  found[#found + 1] = redis.call('GET', ARGV[1] .. user)
end
return found
"""
)

# Each user's open labels (false: none). KEYS: labels. ARGV: the users (framed).
LABELS_SCRIPT = (
    _FRAMED
    + """
local users, found = framed(ARGV[1], ARGV[2]), {}
for i = 1, #users, 6000 do
  local part = redis.call('HMGET', KEYS[1], unpack(users, i, math.min(i + 5999, #users)))
  for _, value in ipairs(part) do
    found[#found + 1] = value
  end
end
return found
"""
)

# Writes a partition's users, due index, watermark and next offset in one atomic step, only for
# the owner's token, and only if the stored offset is not already past the batch (then it was
# applied: return -1). Removed users go first, so one back in the same batch keeps the rest.
# KEYS: owner, offset, watermark, due, segments, labels, erasures
# ARGV: 1 token, 2 first offset, 3 next offset, 4 ttl seconds (0: none), 5 watermark,
#       6 the offset the writer last saw stored ("": none); if the stored one is gone or
#       behind it, the store lost data (a restart, or a failover to a replica that missed it),
#       7 the prefix of the user keys (in the partition's hash slot),
#       8-9 removed users (framed), 10-11 users with a due time (framed), 12 their due times
#       (0: none), 13 segment deltas (segment, delta, ...), 14-15 users whose labels changed
#       (framed), 16-17 their labels (framed; empty: none left), 18-19 users whose record is
#       written (framed), 20-21 their records (framed), 22-23 audit entries (framed),
#       24-25 users whose record keeps all but its next due time (framed), 26 those times,
#       8 bytes each, little-endian, 27 where records keep it (``operators.record.NEXT_DUE_AT``,
#       counted from 0 as SETRANGE does): set in place in the records that still exist.
SAVE_SCRIPT = (
    _FRAMED
    + """
-- One command for many members or fields (a call per user took 1.7 times as long). Chunks stay
-- under Lua's stack limit for unpack (8,000) and keep pairs together.
local function bulk(command, key, items)
  for i = 1, #items, 6000 do
    redis.call(command, key, unpack(items, i, math.min(i + 5999, #items)))
  end
end
local function numbers(text)
  local items = {}
  for n in string.gmatch(text, '-?%d+') do
    items[#items + 1] = n
  end
  return items
end
local owner = redis.call('GET', KEYS[1])
if owner == false then
  return redis.error_reply('LOST the owner token vanished')
end
if owner ~= ARGV[1] then
  return redis.error_reply('FENCED partition has another owner')
end
local stored = redis.call('GET', KEYS[2])
if stored and tonumber(stored) > tonumber(ARGV[2]) then
  return -1
end
if ARGV[6] ~= '' and (stored == false or tonumber(stored) < tonumber(ARGV[6])) then
  return redis.error_reply('LOST the saved offset vanished or went back')
end
local ttl, prefix = tonumber(ARGV[4]), ARGV[7]
local removed = framed(ARGV[8], ARGV[9])
if #removed > 0 then
  for i = 1, #removed do
    redis.call('DEL', prefix .. removed[i])
  end
  bulk('ZREM', KEYS[4], removed)
  bulk('HDEL', KEYS[6], removed)
end
for _, entry in ipairs(framed(ARGV[22], ARGV[23])) do
  redis.call('RPUSH', KEYS[7], entry)
end
local scheduled, unscheduled = {}, {}
local due_users, dues = framed(ARGV[10], ARGV[11]), numbers(ARGV[12])
for i = 1, #due_users do
  if tonumber(dues[i]) > 0 then
    scheduled[#scheduled + 1] = dues[i]
    scheduled[#scheduled + 1] = due_users[i]
  else
    unscheduled[#unscheduled + 1] = due_users[i]
  end
end
bulk('ZADD', KEYS[4], scheduled)
bulk('ZREM', KEYS[4], unscheduled)
local deltas = numbers(ARGV[13])
for i = 1, #deltas, 2 do
  redis.call('HINCRBY', KEYS[5], deltas[i], deltas[i + 1])
end
local kept, dropped = {}, {}
local label_users, labels = framed(ARGV[14], ARGV[15]), framed(ARGV[16], ARGV[17])
for i = 1, #label_users do
  if labels[i] == '' then
    dropped[#dropped + 1] = label_users[i]
  else
    kept[#kept + 1] = label_users[i]
    kept[#kept + 1] = labels[i]
  end
end
bulk('HSET', KEYS[6], kept)
bulk('HDEL', KEYS[6], dropped)
local users, records = framed(ARGV[18], ARGV[19]), framed(ARGV[20], ARGV[21])
for i = 1, #users do
  if ttl > 0 then
    redis.call('SET', prefix .. users[i], records[i], 'EX', ttl)
  else
    redis.call('SET', prefix .. users[i], records[i])
  end
end
local patched = framed(ARGV[24], ARGV[25])
for i = 1, #patched do
  local key = prefix .. patched[i]
  if redis.call('EXISTS', key) == 1 then
    redis.call('SETRANGE', key, ARGV[27], string.sub(ARGV[26], 8 * i - 7, 8 * i))
    if ttl > 0 then
      redis.call('EXPIRE', key, ttl)
    end
  end
end
redis.call('SET', KEYS[3], ARGV[5])
redis.call('SET', KEYS[2], ARGV[3])
return #users
"""
)
