package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"

	"github.com/heraldpush/herald/push"
)

// Servers a run can drive (Config.Server).
const (
	// ServerHerald is a Herald node: GET /v1/stream, POST
	// /v1/topics/{t}/events with a JSON body, cursors in id:.
	ServerHerald = "herald"
	// ServerFloor is the minimal SSE server the ratio targets are measured
	// against (../shared/floor): GET /sse?topic=T, POST /publish?topic=T
	// with the data as the raw body, id: a per-topic sequence from 1, no
	// resume, no hello.
	ServerFloor = "floor"
)

// target is the server under load: its paths, how a publish is sent and
// acknowledged, how an event's id reads as its topic offset, and where a
// topic's head comes from after publishing.
type target struct {
	floor bool
	base  string
	token string

	// heads is the floor's topic heads, from its publish answers (it has
	// no endpoint for them).
	mu    sync.Mutex
	heads map[string]uint64
}

func newTarget(server, base, token string) (*target, error) {
	switch server {
	case "", ServerHerald:
		return &target{base: base, token: token}, nil
	case ServerFloor:
		return &target{floor: true, base: base, heads: map[string]uint64{}}, nil
	}
	return nil, fmt.Errorf("bench: server %q: want %q or %q", server, ServerHerald, ServerFloor)
}

// streamRequest is a subscribe request for topic, resuming from lastID
// where the server resumes.
func (t *target) streamRequest(ctx context.Context, topic, lastID string) *http.Request {
	q := url.Values{"topic": {topic}}.Encode()
	if t.floor {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, t.base+"/sse?"+q, nil)
		return req
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, t.base+"/v1/stream?"+q, nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	if t.token != "" {
		req.Header.Set("Authorization", "Bearer "+t.token)
	}
	return req
}

// offset reads an event id as the event's offset in its topic.
func (t *target) offset(id string, buf []uint64) ([]uint64, error) {
	if !t.floor {
		return push.DecodeOffsets(id, 1, buf)
	}
	n, err := strconv.ParseUint(id, 10, 64)
	if err != nil {
		return buf, err
	}
	return append(buf, n), nil
}

// publish sends items (one, or a batch on Herald).
func (t *target) publish(ctx context.Context, c *http.Client, items []map[string]any) error {
	if !t.floor {
		return benchPublish(ctx, c, t.base, t.token, items)
	}
	if len(items) != 1 {
		return errors.New("bench: the floor server takes one event per request")
	}
	topic, data := items[0]["topic"].(string), items[0]["data"].(string)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, t.base+"/publish?"+url.Values{"topic": {topic}}.Encode(), bytes.NewReader([]byte(data)))
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var out struct {
		ID uint64 `json:"id"`
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&out); err != nil {
		return err
	}
	t.mu.Lock()
	t.heads[topic] = max(t.heads[topic], out.ID)
	t.mu.Unlock()
	return nil
}

// head is a topic's last offset after publishing.
func (t *target) head(ctx context.Context, c *http.Client, topic string) uint64 {
	if !t.floor {
		return topicHead(ctx, c, t.base, t.token, topic)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.heads[topic]
}
