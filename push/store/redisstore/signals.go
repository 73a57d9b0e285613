package redisstore

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/heraldpush/herald/push"
)

// Region signals live next to the origin's streams, in their own hash slot
// ("_" cannot start a topic, so the tag never collides with a stream's):
//
//	P:{_region@O}:beat   hash: t (newest beat, Unix ms), n (beat count)
//	P:{_region@O}:evac   hash: id, a (1 = active), by
//
// Both replicate with the events, so a replica of O in another region reads
// how far O's replication stream has reached there (the heartbeat) and
// whether O is being evacuated.

var _ push.RegionSignals = (*Store)(nil)
var _ push.ReplicaLinker = (*Store)(nil)

func (s *Store) signalKey(name string) string {
	return s.cfg.KeyPrefix + ":{_region@" + s.cfg.Origin + "}:" + name
}

// beatScript keeps the newest beat time (clocks of a region's nodes differ
// a little) and counts beats.
var beatScript = redis.NewScript(`
local t = tonumber(ARGV[1])
local cur = tonumber(redis.call('HGET', KEYS[1], 't') or '0')
if t > cur then redis.call('HSET', KEYS[1], 't', ARGV[1]) else t = cur end
local n = redis.call('HINCRBY', KEYS[1], 'n', 1)
return {string.format('%d', t), n}
`)

// evacScript records an order unless one with an equal or higher id is in
// force, and returns the order in force.
var evacScript = redis.NewScript(`
local cur = tonumber(redis.call('HGET', KEYS[1], 'id') or '0')
if tonumber(ARGV[1]) > cur then
  redis.call('HSET', KEYS[1], 'id', ARGV[1], 'a', ARGV[2], 'by', ARGV[3])
end
return redis.call('HMGET', KEYS[1], 'id', 'a', 'by')
`)

// Beat implements push.RegionSignals.
func (s *Store) Beat(ctx context.Context, t time.Time) (push.Heartbeat, error) {
	if s.cfg.ReadOnly {
		return push.Heartbeat{}, fmt.Errorf("%w: origin %s is read here from a replica", push.ErrReadOnly, s.cfg.Origin)
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	raw, err := beatScript.Run(ctx, s.client, []string{s.signalKey("beat")}, t.UnixMilli()).Slice()
	if err != nil {
		return push.Heartbeat{}, unavailable("beat", "", err)
	}
	if len(raw) != 2 {
		return push.Heartbeat{}, fmt.Errorf("redisstore: beat: unexpected reply %v", raw)
	}
	ms, _ := strconv.ParseInt(fmt.Sprint(raw[0]), 10, 64)
	n, _ := raw[1].(int64)
	return push.Heartbeat{Time: time.UnixMilli(ms), Seq: n}, nil
}

// LastBeat implements push.RegionSignals.
func (s *Store) LastBeat(ctx context.Context) (push.Heartbeat, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	vals, err := s.client.HMGet(ctx, s.signalKey("beat"), "t", "n").Result()
	if err != nil {
		return push.Heartbeat{}, unavailable("last beat", "", err)
	}
	var hb push.Heartbeat
	if v, ok := vals[0].(string); ok {
		ms, _ := strconv.ParseInt(v, 10, 64)
		hb.Time = time.UnixMilli(ms)
	}
	if v, ok := vals[1].(string); ok {
		hb.Seq, _ = strconv.ParseInt(v, 10, 64)
	}
	return hb, nil
}

// Evacuation implements push.RegionSignals.
func (s *Store) Evacuation(ctx context.Context) (push.Evacuation, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	vals, err := s.client.HMGet(ctx, s.signalKey("evac"), "id", "a", "by").Result()
	if err != nil {
		return push.Evacuation{}, unavailable("evacuation", "", err)
	}
	return parseEvacuation(vals), nil
}

// SetEvacuation implements push.RegionSignals.
func (s *Store) SetEvacuation(ctx context.Context, o push.Evacuation) (push.Evacuation, error) {
	if s.cfg.ReadOnly {
		return push.Evacuation{}, fmt.Errorf("%w: origin %s is read here from a replica", push.ErrReadOnly, s.cfg.Origin)
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	active := "0"
	if o.Active {
		active = "1"
	}
	vals, err := evacScript.Run(ctx, s.client, []string{s.signalKey("evac")}, o.ID, active, o.By).Slice()
	if err != nil {
		return push.Evacuation{}, unavailable("set evacuation", "", err)
	}
	return parseEvacuation(vals), nil
}

func parseEvacuation(vals []any) push.Evacuation {
	var o push.Evacuation
	if len(vals) != 3 {
		return o
	}
	if v, ok := vals[0].(string); ok {
		o.ID, _ = strconv.ParseInt(v, 10, 64)
	}
	if v, ok := vals[1].(string); ok {
		o.Active = v == "1"
	}
	if v, ok := vals[2].(string); ok {
		o.By = v
	}
	return o
}

// LinkUp implements push.ReplicaLinker: on a replica, whether its link to
// the primary is up (INFO replication master_link_status); a primary is
// always "up".
func (s *Store) LinkUp(ctx context.Context) (bool, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	info, err := s.client.Info(ctx, "replication").Result()
	if err != nil {
		return false, unavailable("info replication", "", err)
	}
	if !strings.Contains(info, "role:slave") {
		return true, nil
	}
	return strings.Contains(info, "master_link_status:up"), nil
}
