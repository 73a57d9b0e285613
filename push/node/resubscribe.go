package node

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/heraldpush/herald/push"
)

// ErrResubscribe refuses a change of a stream's topics.
var ErrResubscribe = errors.New("cannot change the stream's topics")

// Resubscribe returns the cursor a stream continues with after its client
// added topics (add) or removed them (remove) on the open connection:
// the stream's own positions for the topics it keeps, and for each added
// topic the live head or, when given is set, the position given names (an
// id the client received for exactly the added topics, in their current
// epoch). The cursor keeps cur's session. cur must not be in use.
func (n *Node) Resubscribe(ctx context.Context, cur *push.Cursor, add, remove []string, given string) (string, []string, error) {
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
		return "", nil, fmt.Errorf("%w: a stream keeps at least one topic", ErrResubscribe)
	}
	next, err := push.NewCursor(topics, n.origins)
	if err != nil {
		return "", nil, err
	}
	for i := range next.Len() {
		if k := next.Key(i); !slices.Contains(added, k.Topic) {
			next.SetAt(i, cur.At(cur.Index(k.Topic, k.Origin)))
		}
	}
	if len(added) > 0 {
		infos, _, err := n.env.Infos(ctx, n.origins, added)
		if err != nil {
			return "", nil, err
		}
		var parsed *push.ParsedCursor
		if given != "" {
			if parsed, err = push.ParseCursor(given, added, n.origins); err != nil {
				return "", nil, err
			}
			pcur, _ := push.NewCursor(added, n.origins)
			epochs := make([]string, pcur.Len())
			for _, in := range infos {
				if i := pcur.Index(in.Topic, in.Origin); i >= 0 {
					epochs[i] = in.Epoch
				}
			}
			if _, intact := parsed.VerifyLineages(epochs, nil); !intact {
				return "", nil, fmt.Errorf("%w: the cursor's history changed epoch; subscribe without a cursor", ErrResubscribe)
			}
		}
		read := map[push.StreamKey]uint64{}
		if parsed != nil {
			for i := range parsed.Len() {
				if parsed.Present(i) {
					read[parsed.Key(i)] = parsed.Offset(i)
				}
			}
		}
		for _, in := range infos {
			pos := push.Position{Epoch: in.Epoch, Offset: in.Last}
			if off, ok := read[push.StreamKey{Topic: in.Topic, Origin: in.Origin}]; ok {
				pos.Offset = off
			}
			next.SetAt(next.Index(in.Topic, in.Origin), pos)
		}
	}
	next.SetSession(cur.Session(), cur.Binding())
	return next.String(), next.Topics(), nil
}
