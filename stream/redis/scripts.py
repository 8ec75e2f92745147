"""The Lua scripts of ``stream.redis.state_store``: a partition's batch written atomically,
fenced by the owner token; its users' records and labels read; its due users found.

Users live in buckets (``state_store``'s layout): the client computes each user's bucket and
sends it beside the user, so no script hashes. A list of many values travels as one argument
and the byte sizes of its items ("framed"): packing an argument per user cost the client more
than the rest of the save or load. Every key a script touches carries the partition's hash tag.
"""

# Splits a framed list: ``framed(blob, "3,0,5")`` is the blob's first 3 bytes, "", the next 5;
# ``numbers("4,-1")`` is {"4", "-1"}.
_HELPERS = """
local function framed(blob, sizes)
  local items, at = {}, 1
  for size in string.gmatch(sizes, '%d+') do
    local after = at + tonumber(size)
    items[#items + 1] = string.sub(blob, at, after - 1)
    at = after
  end
  return items
end
-- A record's next due time (0: none, or no record: a value too short to hold one).
local function due_of(record, at)
  if #record < at + 7 then
    return 0
  end
  return (struct.unpack('<i8', record, at))
end
local function numbers(text)
  local items = {}
  for n in string.gmatch(text, '-?%d+') do
    items[#items + 1] = n
  end
  return items
end
"""

# A point read: for each partition (its record bucket's key, then, after all of those, its
# watermark's key), the user's field in the bucket and the watermark. Reads only, so a replica
# runs it too. ARGV: the user.
USER_SCRIPT = """#!lua flags=no-writes
local found, n = {}, #KEYS / 2
for i = 1, n do
  found[2 * i - 1] = redis.call('HGET', KEYS[i], ARGV[1])
  found[2 * i] = redis.call('GET', KEYS[n + i])
end
return found
"""

# The owner token, the stored offset, and each user's record (false: none).
# KEYS: owner, offset. ARGV: the prefix of the bucket keys, the users (framed), their buckets.
LOAD_SCRIPT = (
    _HELPERS
    + """
local found = {redis.call('GET', KEYS[1]), redis.call('GET', KEYS[2])}
local buckets = numbers(ARGV[4])
for i, user in ipairs(framed(ARGV[2], ARGV[3])) do
  found[#found + 1] = redis.call('HGET', ARGV[1] .. buckets[i], user)
end
return found
"""
)

# Each user's open labels (false: none). KEYS: any key of the partition (its slot names the
# cluster node to run on). ARGV: 1 the prefix of the label buckets' keys, 2 users
# per label bucket over users per record bucket (a label bucket is a record bucket's index over
# it), 3-4 the users (framed), 5 their record buckets.
LABELS_SCRIPT = (
    _HELPERS
    + """
local found, buckets, per = {}, numbers(ARGV[5]), tonumber(ARGV[2])
for i, user in ipairs(framed(ARGV[3], ARGV[4])) do
  found[#found + 1] = redis.call('HGET', ARGV[1] .. math.floor(buckets[i] / per), user)
end
return found
"""
)

# Up to about ARGV[3] users whose next due time (in their record, at byte ARGV[4] counted from
# 0) is at or before ARGV[2], from the buckets whose bound in the due index is, in the order of
# their bounds; a call stops after reading about ARGV[5] records, so its work is bounded. The
# bound of a bucket with no user due is raised to its earliest due time (removed if it has
# none): bounds only ever fall in a save, and rise here, where they are exact. The reply starts
# with 1 if buckets were left unread (call again), else 0, then the number of buckets read
# with users due (they keep their bound: a further call skips them, ARGV[6]).
# KEYS: due. ARGV: 1 the prefix of the bucket keys, 2 until, 3 limit, 4 where the due time is,
# 5 most records to read, 6 buckets with users due to skip.
DUE_SCRIPT = (
    _HELPERS
    + """
local due_by, limit, at = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]) + 1
local budget = tonumber(ARGV[5])
local buckets = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'LIMIT', ARGV[6], 1000)
local found, read, left, kept = {0, 0}, 0, #buckets == 1000, 0
for n, bucket in ipairs(buckets) do
  local entries = redis.call('HGETALL', ARGV[1] .. bucket)
  read = read + #entries / 2
  local earliest, due_here = nil, false
  for i = 1, #entries, 2 do
    local due = due_of(entries[i + 1], at)
    if due > 0 then
      if due <= due_by then
        found[#found + 1] = entries[i]
        due_here = true
      elseif earliest == nil or due < earliest then
        earliest = due
      end
    end
  end
  if due_here then
    kept = kept + 1
  else
    if earliest then
      redis.call('ZADD', KEYS[1], 'XX', earliest, bucket)
    else
      redis.call('ZREM', KEYS[1], bucket)
    end
  end
  if #found > limit + 1 or read >= budget then
    left = left or n < #buckets
    break
  end
end
if left then
  found[1] = 1
end
found[2] = kept
return found
"""
)

# A partition's batch is saved in three steps, so that no script runs long (a point read waits
# behind it) and a crash between them loses nothing:
#
# 1. WAL_SCRIPT writes the whole batch to the partition's write-ahead log (``wal``: a header,
#    "SSW1" and the batch's first offset, 8 bytes little-endian, then every script argument of
#    steps 2 and 3), if this writer owns the partition and the stored offset is not already
#    past the batch (then it was applied: -1) nor behind what this writer saved (LOST).
# 2. CHUNK_SCRIPT applies a run of at most a few hundred users, if the log holds this batch
#    (else -1: nothing to do). Applying a run twice leaves what applying it once did.
# 3. COMMIT_SCRIPT applies what must happen once (segment sizes, the audit log), moves the
#    watermark and the offset, and deletes the log, in one step.
#
# A consumer that claims a partition with a log left in it (its writer died between steps)
# runs steps 2 and 3 again from the log: the batch is saved whole. Every step checks the owner
# token: a writer fenced off by a new owner changes nothing.

_OWNER = """
local owner = redis.call('GET', KEYS[1])
if owner == false then
  return redis.error_reply('LOST the owner token vanished')
end
if owner ~= ARGV[1] then
  return redis.error_reply('FENCED partition has another owner')
end
"""

# True if the log (``log_key``) holds the batch that starts at ``first``.
_LOGGED = """
local function logged(log_key, first)
  local head = redis.call('GETRANGE', log_key, 0, 11)
  return #head == 12 and string.sub(head, 1, 4) == 'SSW1'
    and struct.unpack('<i8', head, 5) == tonumber(first)
end
"""

# KEYS: owner, offset, wal. ARGV: 1 token, 2 first offset, 3 the offset the writer last saw
# stored ("": none; if the stored one is gone or behind it, the store lost data: a restart, or
# a failover to a replica that missed it), 4 the log.
WAL_SCRIPT = (
    _OWNER
    + """
local stored = redis.call('GET', KEYS[2])
if stored and tonumber(stored) > tonumber(ARGV[2]) then
  return -1
end
if ARGV[3] ~= '' and (stored == false or tonumber(stored) < tonumber(ARGV[3])) then
  return redis.error_reply('LOST the saved offset vanished or went back')
end
redis.call('SET', KEYS[3], ARGV[4])
return 1
"""
)

# KEYS: owner, wal, due. ARGV: 1 token, 2 first offset, 3 the prefix of the record buckets'
# keys, 4 that of the label buckets' keys, 5 record buckets per label bucket, 6 where records
# keep the next due time (``stream.redis.compact.DUE_AT``, counted from 0); then lists of users
# (framed) with their record buckets and values: 7-9 removed users; 10-14 users whose labels
# changed, their labels (framed; empty: none left); 15-19 users whose record is written, their
# records (framed); 20-23 users whose record keeps all but its next due time, and those times
# (8 bytes each, little-endian), set in place in the records that still exist. Removed users
# go first, so one back in the same batch keeps the rest. A written or patched record's due
# time lowers its bucket's bound in the due index if earlier.
CHUNK_SCRIPT = (
    _HELPERS
    + _LOGGED
    + _OWNER
    + """
if not logged(KEYS[2], ARGV[2]) then
  return -1
end
local records, labels, per = ARGV[3], ARGV[4], tonumber(ARGV[5])
local at = tonumber(ARGV[6]) + 1
local function labels_of(bucket)
  return labels .. math.floor(tonumber(bucket) / per)
end
local removed, removed_in = framed(ARGV[7], ARGV[8]), numbers(ARGV[9])
for i = 1, #removed do
  redis.call('HDEL', records .. removed_in[i], removed[i])
  redis.call('HDEL', labels_of(removed_in[i]), removed[i])
end
local label_users, label_values = framed(ARGV[10], ARGV[11]), framed(ARGV[12], ARGV[13])
local label_in = numbers(ARGV[14])
for i = 1, #label_users do
  if label_values[i] == '' then
    redis.call('HDEL', labels_of(label_in[i]), label_users[i])
  else
    redis.call('HSET', labels_of(label_in[i]), label_users[i], label_values[i])
  end
end
-- The earliest due time written to each bucket, for one ZADD LT per bucket.
local earliest = {}
local function lower(bucket, due)
  if due > 0 and (earliest[bucket] == nil or due < earliest[bucket]) then
    earliest[bucket] = due
  end
end
local users, values = framed(ARGV[15], ARGV[16]), framed(ARGV[17], ARGV[18])
local users_in = numbers(ARGV[19])
for i = 1, #users do
  redis.call('HSET', records .. users_in[i], users[i], values[i])
  lower(users_in[i], due_of(values[i], at))
end
local patched, patched_in = framed(ARGV[20], ARGV[21]), numbers(ARGV[22])
for i = 1, #patched do
  local key = records .. patched_in[i]
  local record = redis.call('HGET', key, patched[i])
  if record then
    local due = string.sub(ARGV[23], 8 * i - 7, 8 * i)
    local kept = string.sub(record, 1, at - 1) .. due .. string.sub(record, at + 8)
    redis.call('HSET', key, patched[i], kept)
    lower(patched_in[i], struct.unpack('<i8', due))
  end
end
local bounds = {}
for bucket, due in pairs(earliest) do
  bounds[#bounds + 1] = due
  bounds[#bounds + 1] = bucket
end
if #bounds > 0 then
  redis.call('ZADD', KEYS[3], 'LT', unpack(bounds))
end
return #users
"""
)

# KEYS: owner, offset, watermark, segments, erasures, wal. ARGV: 1 token, 2 first offset, 3 next
# offset, 4 watermark, 5 segment deltas (segment, delta, ...), 6-7 audit entries (framed).
COMMIT_SCRIPT = (
    _HELPERS
    + _LOGGED
    + _OWNER
    + """
if not logged(KEYS[6], ARGV[2]) then
  return -1
end
local deltas = numbers(ARGV[5])
for i = 1, #deltas, 2 do
  redis.call('HINCRBY', KEYS[4], deltas[i], deltas[i + 1])
end
for _, entry in ipairs(framed(ARGV[6], ARGV[7])) do
  redis.call('RPUSH', KEYS[5], entry)
end
redis.call('SET', KEYS[3], ARGV[4])
redis.call('SET', KEYS[2], ARGV[3])
redis.call('DEL', KEYS[6])
return 1
"""
)
