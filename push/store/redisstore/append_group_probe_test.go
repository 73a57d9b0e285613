package redisstore

// queuedAppends is how many append calls wait unsent in s's committer.
func queuedAppends(s *Store) int {
	if s.commit == nil {
		return 0
	}
	s.commit.mu.Lock()
	defer s.commit.mu.Unlock()
	n := 0
	for _, c := range s.commit.queue {
		if c.state.Load() == callQueued {
			n++
		}
	}
	return n
}

// committerBatches is how many round trips s's committer goroutine made.
func committerBatches(s *Store) int64 {
	if s.commit == nil {
		return 0
	}
	return s.commit.batches.Load()
}
