package memstore

import (
	"context"
	"time"

	"github.com/heraldpush/herald/push"
)

// signals holds the region signals of an embedded store (one process: no
// replicas read them).
type signals struct {
	beat push.Heartbeat
	evac push.Evacuation
}

var _ push.RegionSignals = (*Store)(nil)

// Beat implements push.RegionSignals.
func (s *Store) Beat(_ context.Context, t time.Time) (push.Heartbeat, error) {
	if s.closed.Load() {
		return push.Heartbeat{}, push.ErrClosed
	}
	s.smu.Lock()
	defer s.smu.Unlock()
	s.sig.beat.Seq++
	if t.After(s.sig.beat.Time) {
		s.sig.beat.Time = t
	}
	return s.sig.beat, nil
}

// LastBeat implements push.RegionSignals.
func (s *Store) LastBeat(context.Context) (push.Heartbeat, error) {
	s.smu.Lock()
	defer s.smu.Unlock()
	return s.sig.beat, nil
}

// Evacuation implements push.RegionSignals.
func (s *Store) Evacuation(context.Context) (push.Evacuation, error) {
	s.smu.Lock()
	defer s.smu.Unlock()
	return s.sig.evac, nil
}

// SetEvacuation implements push.RegionSignals.
func (s *Store) SetEvacuation(_ context.Context, o push.Evacuation) (push.Evacuation, error) {
	s.smu.Lock()
	defer s.smu.Unlock()
	if o.ID > s.sig.evac.ID {
		s.sig.evac = o
	}
	return s.sig.evac, nil
}
