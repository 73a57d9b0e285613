package redisstore

import "github.com/redis/go-redis/v9"

// Redis data layout of one stream (topic T from origin O, key prefix P).
// The hash tag {T@O} puts all keys of a stream in one Redis Cluster slot.
//
//	P:{T@O}:s          stream; entry id "<offset>-0", fields t (type),
//	                   d (data), ts (accept time, ms, Redis clock), tp
//	                   (traceparent, only when set)
//	P:{T@O}:m          meta hash: e (epoch), o (last offset), r (primary
//	                   run_id under which e was last confirmed), a (next
//	                   age-trim check, ms), s (first offset of epoch e),
//	                   p (the epoch whose history below s epoch e inherited;
//	                   "" when none or unknown), q (the s that p belongs
//	                   to: p counts only while q equals s, so a node that
//	                   predates p and moves s leaves no stale parent)
//	P:{T@O}:c:<rand>   one append call's result, PX 10s (driver retries)
//	P:{T@O}:i:<sha256> idempotency result "epoch:offset:ts", PX window
//	P:n:T@O            Pub/Sub channel announcing every appended event (one
//	                   message per append call, listener.go)
//
// Epoch rule. The effective epoch is e when r equals the primary's current
// run_id, else derive(e, run_id) = sha1hex(e .. run_id):sub(1,16). A primary
// gets a new run_id whenever its dataset may have diverged from what it
// acknowledged before: on every restart (whatever it reloads) and whenever a
// replica is promoted (Sentinel or Cluster failover, REPLICAOF NO ONE: the
// new primary is another process). So after any event that can roll back
// the offset counter, the effective epoch is new and (epoch, offset) pairs
// handed out before cannot be handed out again for different events.
//
// Why run_id and not master_replid: a primary also changes its replication
// id when its first replica attaches and when its backlog expires without
// replicas, which would reset every client for nothing. A replica has its
// own run_id, so reads served by a replica report the replicated epoch as
// is; it lags the primary only between a primary restart and that stream's
// next append (a reader then sees the old epoch with the restored data, and
// new events are only ever written under the new epoch).
//
// A missing meta hash (expired, evicted, deleted) starts a fresh random epoch
// and continues offsets above the stream's last id.

// luaCommon is shared by both scripts (after their shebang line).
const luaCommon = `
-- generation returns this server's run_id, or nil on a replica (whose reads
-- report the replicated epoch unchanged).
local function generation()
  local info = redis.call('INFO', 'server', 'replication')
  if string.match(info, 'role:slave') then return nil end
  return string.match(info, 'run_id:(%w+)') or ''
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function effective_epoch(e, r, gen)
  if gen == nil or r == gen then return e end
  return string.sub(redis.sha1hex(e .. gen), 1, 16)
end

local function id_offset(id)
  return tonumber(string.match(id, '^(%d+)-'))
end

local function entry_ts(entry)
  local f = entry[2]
  for j = 1, #f, 2 do
    if f[j] == 'ts' then return tonumber(f[j + 1]) end
  end
  return 0
end

local function fmt(n)
  return string.format('%d', n)
end

-- first_live finds the first entry whose ts is >= cutoff by binary search over
-- offsets (entry ids are offsets, not times). It returns that entry's offset
-- and ts, or nil when every entry is older; and the first retained offset
-- (nil when the stream is empty). top bounds the search.
local function first_live(stream, cutoff, top)
  local head = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)
  if #head == 0 then return nil, nil, nil end
  local first = id_offset(head[1][1])
  local ts = entry_ts(head[1])
  if ts >= cutoff then return first, ts, first end
  local lo, hi = first + 1, math.max(top, first) + 1
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    local e = redis.call('XRANGE', stream, fmt(mid) .. '-0', '+', 'COUNT', 1)
    if #e == 0 then
      hi = mid
    else
      local eo = id_offset(e[1][1])
      if entry_ts(e[1]) >= cutoff then hi = mid else lo = eo + 1 end
    end
  end
  local e = redis.call('XRANGE', stream, fmt(lo) .. '-0', '+', 'COUNT', 1)
  if #e == 0 then return nil, nil, first end
  return id_offset(e[1][1]), entry_ts(e[1]), first
end
`

// appendScript appends all drafts of one Append call.
//
//	KEYS[1] stream, KEYS[2] meta, KEYS[3] this call's result record, KEYS[4..] idempotency keys
//	ARGV[1] fresh random epoch (used only when the meta hash is missing)
//	ARGV[2] notification channel
//	ARGV[3] MaxLen (0: none)       ARGV[4] "1" for approximate MAXLEN
//	ARGV[5] MaxAge ms (0: none)    ARGV[6] idle TTL ms (0: none)
//	ARGV[7] idempotency window ms  ARGV[8] age-check granularity ms
//	ARGV[9] number of drafts, then per draft: type, data, traceparent,
//	        index of its idempotency key in KEYS (0: none)
//
// Returns per draft: epoch, offset, ts, duplicate (0/1).
//
// The shebang makes Redis 7 reject the whole script up front (never half-way)
// when it is out of memory or is asked to run on a replica.
var appendScript = redis.NewScript("#!lua\n" + luaCommon + `
local stream, meta, call = KEYS[1], KEYS[2], KEYS[3]
local prior = redis.call('GET', call)
if prior then return cjson.decode(prior) end -- a retried call: answer, write nothing
local gen = generation() or '' -- appends only run on primaries
local now = now_ms()

local function last_generated()
  if redis.call('EXISTS', stream) == 0 then return 0 end
  local info = redis.call('XINFO', 'STREAM', stream)
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then return id_offset(info[i + 1]) or 0 end
  end
  return 0
end

local m = redis.call('HMGET', meta, 'e', 'o', 'r', 'a', 's', 'p', 'q')
local epoch, off, nextage = m[1], tonumber(m[2]) or 0, tonumber(m[4]) or 0
local start = tonumber(m[5]) or 1
local parent = ''
if m[6] and m[7] == m[5] then parent = m[6] end
if not epoch then
  -- New stream, or meta lost while the stream survived: new lineage, and
  -- offsets continue above the stream's last id so XADD ids keep growing.
  epoch = ARGV[1]
  off = last_generated()
  nextage = 0
  start = off + 1
  parent = ''
else
  if m[3] ~= gen then
    -- A new lineage begins here; below it is epoch e's history as this
    -- primary holds it.
    start = off + 1
    parent = epoch
  end
  epoch = effective_epoch(epoch, m[3], gen)
end

local maxlen, approx = tonumber(ARGV[3]), ARGV[4] == '1'
local maxage, idle = tonumber(ARGV[5]), tonumber(ARGV[6])
local window, gran = tonumber(ARGV[7]), tonumber(ARGV[8])
local n = tonumber(ARGV[9])
local nowstr = fmt(now)
local out = {}
local wrote = false
local notes = {} -- per new event: offset, type, traceparent, #data, data

for i = 0, n - 1 do
  local b = 10 + i * 4
  local typ, data, tp, ik = ARGV[b], ARGV[b + 1], ARGV[b + 2], tonumber(ARGV[b + 3])
  local de, doff, dts
  if ik > 0 then
    local v = redis.call('GET', KEYS[ik])
    if v then de, doff, dts = string.match(v, '^(%w+):(%d+):(%d+)$') end
  end
  if de then
    out[#out + 1] = de
    out[#out + 1] = tonumber(doff)
    out[#out + 1] = tonumber(dts)
    out[#out + 1] = 1
  else
    off = off + 1
    local args = {'XADD', stream}
    if maxlen > 0 then
      args[#args + 1] = 'MAXLEN'
      if approx then args[#args + 1] = '~' end
      args[#args + 1] = ARGV[3]
    end
    local idpos = #args + 1
    args[idpos] = fmt(off) .. '-0'
    args[#args + 1] = 't'
    args[#args + 1] = typ
    args[#args + 1] = 'd'
    args[#args + 1] = data
    args[#args + 1] = 'ts'
    args[#args + 1] = nowstr
    if tp ~= '' then
      args[#args + 1] = 'tp'
      args[#args + 1] = tp
    end
    local r = redis.pcall(unpack(args))
    if type(r) == 'table' and r.err then
      -- The stream is ahead of the counter (meta and stream diverged, e.g.
      -- restored separately): continue above it under a new lineage. Only
      -- the first write of a call can get here, so nothing is half-done.
      local top = last_generated()
      if wrote or top < off then return r end
      off = top + 1
      epoch = ARGV[1]
      parent = ''  -- history of unknown origin below: inherit nothing
      args[idpos] = fmt(off) .. '-0'
      redis.call(unpack(args))
    end
    wrote = true
    local offstr = fmt(off)
    if ik > 0 then
      redis.call('SET', KEYS[ik], epoch .. ':' .. offstr .. ':' .. nowstr, 'PX', window)
    end
    notes[#notes + 1] = offstr
    notes[#notes + 1] = typ
    notes[#notes + 1] = tp
    notes[#notes + 1] = fmt(#data)
    notes[#notes + 1] = data
    out[#out + 1] = epoch
    out[#out + 1] = off
    out[#out + 1] = now
    out[#out + 1] = 0
  end
end

-- One notification per call: version 1 for a single event (what nodes
-- before version 2 decode), version 2 for several (listener.go).
if #notes == 5 then
  redis.call('PUBLISH', ARGV[2], '1\n' .. epoch .. '\n' .. notes[1] .. '\n' .. nowstr .. '\n' .. notes[2] .. '\n' .. notes[3] .. '\n' .. notes[5])
elseif #notes > 5 then
  redis.call('PUBLISH', ARGV[2], '2\n' .. epoch .. '\n' .. nowstr .. '\n' .. fmt(#notes / 5) .. '\n' .. table.concat(notes, '\n'))
end

if wrote then
  if maxage > 0 and now >= nextage then
    local live, lts, first = first_live(stream, now - maxage, off)
    if live then
      if live > first then redis.call('XTRIM', stream, 'MINID', fmt(live) .. '-0') end
      nextage = math.max(lts + maxage, now + gran)
    else
      nextage = now + gran
    end
  end
  redis.call('HSET', meta, 'e', epoch, 'o', fmt(off), 'r', gen, 'a', fmt(nextage), 's', fmt(start), 'p', parent, 'q', fmt(start))
  if idle > 0 then
    redis.call('PEXPIRE', stream, ARGV[6])
    redis.call('PEXPIRE', meta, ARGV[6])
  end
end
redis.call('SET', call, cjson.encode(out), 'PX', 10000)
return out
`)

// readScript returns a stream's info and up to limit entries after an
// offset, atomically, without writing: it runs with EVALSHA_RO and so also on
// replicas. With limit 0 it is the Info query.
//
//	KEYS[1] stream, KEYS[2] meta
//	ARGV[1] after, ARGV[2] limit, ARGV[3] MaxAge ms (0: none)
//
// Returns {epoch, first, last, length, entries, epoch start, parent epoch}.
// Entries older than MaxAge
// are hidden even before an append trims them. A stream without meta is
// reported as never written: its next append starts a new epoch anyway.
var readScript = redis.NewScript("#!lua flags=no-writes\n" + luaCommon + `
local stream, meta = KEYS[1], KEYS[2]
local after, limit, maxage = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local m = redis.call('HMGET', meta, 'e', 'o', 'r', 's', 'p', 'q')
if not m[1] then return {'', 0, 0, 0, {}, 0, ''} end
local gen = generation()
local epoch = effective_epoch(m[1], m[3], gen)
local last = tonumber(m[2]) or 0
-- The epoch start and parent the next append will persist when the
-- lineage changed.
local start = tonumber(m[4]) or 1
local parent = ''
if m[5] and m[6] == m[4] then parent = m[5] end
if gen ~= nil and m[3] ~= gen then
  start = last + 1
  parent = m[1]
end
local first, len = 0, 0
local head = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)
if #head > 0 then
  first = id_offset(head[1][1])
  len = redis.call('XLEN', stream)
  local cutoff = now_ms() - maxage
  if maxage > 0 and entry_ts(head[1]) < cutoff then
    local live = first_live(stream, cutoff, last)
    if live then
      len = len - (live - first)
      first = live
    else
      first, len = 0, 0
    end
  end
end
local entries = {}
if limit > 0 and len > 0 then
  entries = redis.call('XRANGE', stream, fmt(math.max(after + 1, first)) .. '-0', '+', 'COUNT', limit)
end
return {epoch, first, last, len, entries, start, parent}
`)
