package stream

import (
	"context"
	"fmt"
	"time"

	"github.com/heraldpush/herald/push"
)

// Infos describes the topics' streams of every origin. An origin whose
// store is unreachable is described from the hub's recent-events cache
// (returned, by stream, for the reads); when the cache does not hold all
// its topics, the error is returned.
func (e *Env) Infos(ctx context.Context, origins, topics []string) ([]push.StreamInfo, map[push.StreamKey][]*push.Event, error) {
	var infos []push.StreamInfo
	var recent map[push.StreamKey][]*push.Event
	for _, origin := range origins {
		ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
		in, err := e.Stores[origin].Info(ictx, topics)
		cancel()
		if err == nil {
			infos = append(infos, in...)
			continue
		}
		// The store is away: a resume this node's recent-events cache
		// covers is served from it; anything else comes back later.
		in, evs := e.recentInfos(topics, origin)
		if evs == nil {
			return nil, nil, fmt.Errorf("origin %s: %w", origin, err)
		}
		infos = append(infos, in...)
		if recent == nil {
			recent = make(map[push.StreamKey][]*push.Event)
		}
		for t, ev := range evs {
			recent[push.StreamKey{Topic: t, Origin: origin}] = ev
		}
	}
	return infos, recent, nil
}

// recentInfos describes (topic, origin) streams from the hub's recent-events
// cache, or returns nil when the cache does not hold every topic.
func (e *Env) recentInfos(topics []string, origin string) ([]push.StreamInfo, map[string][]*push.Event) {
	infos := make([]push.StreamInfo, 0, len(topics))
	recent := make(map[string][]*push.Event, len(topics))
	for _, t := range topics {
		evs, ok := e.Hub.Recent(t, origin)
		if !ok {
			return nil, nil
		}
		first, last := evs[0], evs[len(evs)-1]
		infos = append(infos, push.StreamInfo{Topic: t, Origin: origin, Epoch: last.Epoch,
			First: first.Offset, Last: last.Offset, Length: int64(len(evs))})
		recent[t] = evs
	}
	return infos, recent
}

// AwaitReplicas gives the replicas of remote origins that are behind the
// client's cursor (Behind) up to wait to catch up, and returns the infos
// refreshed. Streams still behind are answered with a replica_behind reset
// by Plan.
func (e *Env) AwaitReplicas(ctx context.Context, cur *push.Cursor, r Resume, infos []push.StreamInfo, wait time.Duration) []push.StreamInfo {
	waiting := Behind(cur, r, infos)
	if len(waiting) == 0 {
		return infos
	}
	deadline := time.Now().Add(wait)
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for len(waiting) > 0 && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return infos
		case <-e.Closed.Done():
			return infos
		case <-t.C:
		}
		for origin := range waiting {
			ictx, cancel := context.WithTimeout(ctx, time.Second)
			fresh, err := e.Stores[origin].Info(ictx, cur.Topics())
			cancel()
			if err != nil {
				continue
			}
			for j, in := range infos {
				if in.Origin == origin {
					for _, f := range fresh {
						if f.Topic == in.Topic {
							infos[j] = f
						}
					}
				}
			}
		}
		waiting = Behind(cur, r, infos)
	}
	return infos
}
