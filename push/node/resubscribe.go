package node

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/stream"
)

// ErrResubscribe refuses a change of a stream's topics.
var ErrResubscribe = errors.New("cannot change the stream's topics")

// Resubscribe returns the cursor a stream continues with after its client
// added topics (add) or removed them (remove) on the open connection:
// the stream's own positions for the topics it keeps, and for each added
// topic the live head or, when given is set, where the position given
// names (an id the client received for exactly the added topics) resumes.
// That position is planned as a reconnect with it would be (stream.Plan):
// a cursor of an epoch the history no longer has, trimmed or ahead of the
// head continues where the plan says, and the resets returned announce it
// with the next stream's hello, as on a reconnect. (A replica_behind reset
// keeps the client's position: the next stream's connect finds and
// announces it itself.) The cursor keeps cur's session. cur must not be in
// use.
func (n *Node) Resubscribe(ctx context.Context, cur *push.Cursor, add, remove []string, given string) (string, []string, []push.StreamReset, error) {
	topics := slices.Clone(cur.Topics())
	var added []string
	for _, t := range add {
		if !slices.Contains(topics, t) && !slices.Contains(added, t) {
			added = append(added, t)
		}
	}
	topics = append(topics, added...)
	topics = slices.DeleteFunc(topics, func(t string) bool { return slices.Contains(remove, t) })
	if len(topics) == 0 {
		return "", nil, nil, fmt.Errorf("%w: a stream keeps at least one topic", ErrResubscribe)
	}
	next, err := push.NewCursor(topics, n.origins)
	if err != nil {
		return "", nil, nil, err
	}
	for i := range next.Len() {
		if k := next.Key(i); !slices.Contains(added, k.Topic) {
			next.SetAt(i, cur.At(cur.Index(k.Topic, k.Origin)))
		}
	}
	var resets []push.StreamReset
	if len(added) > 0 {
		infos, _, err := n.env.Infos(ctx, n.origins, added)
		if err != nil {
			return "", nil, nil, err
		}
		acur, err := push.NewCursor(added, n.origins)
		if err != nil {
			return "", nil, nil, err
		}
		resume := stream.Resume{Local: n.store.Origin()}
		if given != "" {
			if resume.Parsed, err = push.ParseCursor(given, added, n.origins); err != nil {
				return "", nil, nil, err
			}
		}
		plan := stream.Plan(acur, resume, infos)
		for i := range acur.Len() {
			k := acur.Key(i)
			next.SetAt(next.Index(k.Topic, k.Origin), acur.At(i))
		}
		for _, r := range plan.Resets {
			if r.Reason != push.ResetReplicaBehind {
				resets = append(resets, r)
			}
		}
	}
	next.SetSession(cur.Session(), cur.Binding())
	return next.String(), next.Topics(), resets, nil
}
