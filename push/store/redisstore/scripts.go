package redisstore

import "github.com/redis/go-redis/v9"

// Redis data layout of one stream (topic T from origin O, key prefix P).
// The hash tag {T@O} puts all keys of a stream in one Redis Cluster slot.
//
//	P:{T@O}:s          stream; entry id "<offset>-0", fields t (type),
//	                   d (data), ts (accept time, ms, Redis clock), tp
//	                   (traceparent, only when set)
//	P:{T@O}:m          meta hash: e (epoch), o (last offset), r (primary
//	                   generation, run_id:master_replid, under which e was
//	                   last confirmed), a (next
//	                   age-trim check, ms), s (first offset of epoch e),
//	                   p (the epoch whose history below s epoch e inherited;
//	                   "" when none or unknown), q (the s that p belongs
//	                   to: p counts only while q equals s, so a node that
//	                   predates p and moves s leaves no stale parent),
//	                   l (the lineage: "epoch:at;epoch:at…", newest first,
//	                   at most push.MaxLineage; counts only while q equals s,
//	                   like p; its first entry is p with at = s-1)
//	P:{T@O}:c:<rand>   one append call's result, PX 10s (driver retries)
//	P:{T@O}:i:<sha256> idempotency result "epoch:offset:ts", PX window
//	P:n:T@O            Pub/Sub channel announcing every appended event (one
//	                   message per append call, listener.go)
//
// Epoch rule. The effective epoch is e when r equals the primary's current
// generation (run_id:master_replid), else derive(e, gen) =
// sha1hex(e .. gen):sub(1,16). The generation changes whenever the dataset
// may have diverged from what was acknowledged before: run_id on every
// restart (whatever it reloads), master_replid on every promotion (Sentinel
// or Cluster failover, REPLICAOF NO ONE). run_id alone is not enough: a
// primary demoted by a failover, re-synced from a replica that missed its
// tail, and promoted again keeps its run_id (ADR 0024 found it; tested).
// master_replid also changes when a primary's first replica attaches and
// when its backlog expires without replicas; that forks a new epoch at the
// head, which costs readers nothing (lineage rule below). A replica reports
// the replicated epoch as is.
//
// A missing meta hash (expired, evicted, deleted) starts a fresh random epoch
// and continues offsets above the stream's last id.
//
// Lineage rule (ADR 0024). The append script that finds r different from
// the current run_id begins the new epoch and, in the same script, prepends
// (e, o) to l: the epoch it derives from and the head it found, the fork
// point. The record lives in the meta hash, so a snapshot that rolls the
// stream back rolls the record back with it, consistently: the fork point
// written after the restart is the restored head, and every epoch written
// after the snapshot is absent from the restored record (its readers get
// the conservative reset). Reads on a primary whose run_id changed but that
// has not been appended to report the stored epoch and lineage unchanged:
// an epoch exists once something was written in it, so no reader is handed
// an epoch that a second restart could make vanish from every lineage.

// luaCommon is shared by both scripts (after their shebang line).
const luaCommon = `
-- generation returns this primary's run_id and replication id, or nil on
-- a replica. Either changes whenever the dataset may have diverged from
-- what was acknowledged under the stored one: run_id on every restart,
-- master_replid on every promotion (also of a server that was primary
-- before, lost its tail as a replica, and keeps its run_id).
local function generation()
  local info = redis.call('INFO', 'server', 'replication')
  if string.match(info, 'role:slave') then return nil end
  return (string.match(info, 'run_id:(%w+)') or '') .. ':' .. (string.match(info, 'master_replid:(%w+)') or '')
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

-- lineage_of returns the recorded lineage string when it belongs to the
-- current epoch start (q == s), else ''.
local function lineage_of(l, q, s)
  if l and q == s then return l end
  return ''
end

-- fork_lineage prepends (epoch, at) to lineage l, keeping at most max entries.
local function fork_lineage(epoch, at, l, max)
  local out = {epoch .. ':' .. fmt(at)}
  for entry in string.gmatch(l, '[^;]+') do
    if #out >= max then break end
    out[#out + 1] = entry
  end
  return table.concat(out, ';')
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
//	ARGV[9] lineage bound (push.MaxLineage)
//	ARGV[10] number of drafts, then per draft: type, data, traceparent,
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

local m = redis.call('HMGET', meta, 'e', 'o', 'r', 'a', 's', 'p', 'q', 'l')
local epoch, off, nextage = m[1], tonumber(m[2]) or 0, tonumber(m[4]) or 0
local start = tonumber(m[5]) or 1
local parent = ''
if m[6] and m[7] == m[5] then parent = m[6] end
local lineage = lineage_of(m[8], m[7], m[5])
local maxlineage = tonumber(ARGV[9])
if not epoch then
  -- New stream, or meta lost while the stream survived: new lineage, and
  -- offsets continue above the stream's last id so XADD ids keep growing.
  epoch = ARGV[1]
  off = last_generated()
  nextage = 0
  start = off + 1
  parent = ''
  lineage = ''
else
  if m[3] ~= gen then
    -- A new run of Redis (restart, promotion, rollback): a new epoch
    -- begins here, atomically with the append that found it. Below it is
    -- epoch e's history as this primary holds it: the fork point is the
    -- head it found.
    start = off + 1
    parent = epoch
    lineage = fork_lineage(epoch, off, lineage, maxlineage)
  end
  epoch = effective_epoch(epoch, m[3], gen)
end

local maxlen, approx = tonumber(ARGV[3]), ARGV[4] == '1'
local maxage, idle = tonumber(ARGV[5]), tonumber(ARGV[6])
local window, gran = tonumber(ARGV[7]), tonumber(ARGV[8])
local n = tonumber(ARGV[10])
local nowstr = fmt(now)
local out = {}
local wrote = false
local notes = {} -- per new event: offset, type, traceparent, #data, data

for i = 0, n - 1 do
  local b = 11 + i * 4
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
      lineage = ''
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
  redis.call('HSET', meta, 'e', epoch, 'o', fmt(off), 'r', gen, 'a', fmt(nextage), 's', fmt(start), 'p', parent, 'q', fmt(start), 'l', lineage)
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
// Returns {epoch, first, last, length, entries, epoch start, parent epoch,
// lineage}. Entries older than MaxAge
// are hidden even before an append trims them. A stream without meta is
// reported as never written: its next append starts a new epoch anyway.
//
// The epoch reported is the stored one, also on a primary whose run_id
// changed since (the next append begins the new epoch and records the fork
// at the head read here): see the lineage rule above.
var readScript = redis.NewScript("#!lua flags=no-writes\n" + luaCommon + `
local stream, meta = KEYS[1], KEYS[2]
local after, limit, maxage = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local m = redis.call('HMGET', meta, 'e', 'o', 'r', 's', 'p', 'q', 'l')
if not m[1] then return {'', 0, 0, 0, {}, 0, '', ''} end
local epoch = m[1]
local last = tonumber(m[2]) or 0
local start = tonumber(m[4]) or 1
local parent = ''
if m[5] and m[6] == m[4] then parent = m[5] end
local lineage = lineage_of(m[7], m[6], m[4])
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
return {epoch, first, last, len, entries, start, parent, lineage}
`)
