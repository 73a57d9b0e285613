package stream

import (
	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/hub"
)

// seamClosed reports that slot i of cur needs no store read once sub is
// registered: the hub's position in the slot's stream at registration
// (hub.Subscriber.Seen) is in the cursor's epoch and not past it, so every
// later event reaches sub's queue. A fresh stream on a watched topic
// connects with one store call (Info) instead of two, or none when the hub
// answers its heads (hub.Heads, ADR 0029).
func seamClosed(sub *hub.Subscriber, cur *push.Cursor, i int) bool {
	k, at := cur.Key(i), cur.At(i)
	seen, ok := sub.Seen(k.Topic, k.Origin)
	// Both empty (the stream did not exist at connect, and the hub has
	// dispatched none of it): its first events reach the queue, and the
	// live loop reads any it finds it lacks from the store.
	return ok && seen.Epoch == at.Epoch && seen.Offset <= at.Offset
}
