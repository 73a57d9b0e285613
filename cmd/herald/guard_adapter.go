package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/heraldpush/herald/observability"
	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/server"
	"github.com/heraldpush/herald/resilience"
)

// guardView adapts *resilience.Guards to the server.Guard interface.
type guardView struct{ g *resilience.Guards }

var _ server.Guard = guardView{}

func (v guardView) Publish(tenant, topic string) (func(error), error) {
	p, blk := v.g.Publish(tenant, topic)
	if blk != nil {
		return nil, blk
	}
	return p.Done, nil
}

// PublishN admits up to n publishes at once (NDJSON ingest, one call per
// request and topic); err is set when fewer than n were admitted.
func (v guardView) PublishN(tenant, topic string, n int) (int, func(error), error) {
	k, p, blk := v.g.PublishN(tenant, topic, n)
	if blk != nil {
		if k == 0 {
			return 0, nil, blk
		}
		return k, p.Done, blk
	}
	return k, p.Done, nil
}

func (v guardView) Admit(ip string) (func(), func(), error) {
	st, blk := v.g.Admit(ip)
	if blk != nil {
		return nil, nil, blk
	}
	return st.Live, st.Done, nil
}

func (v guardView) Replay(ctx context.Context) (func(), error) { return v.g.Replay(ctx) }

func (v guardView) Request(ip string) (func(), error) {
	done, blk := v.g.Request(ip)
	if blk != nil {
		return nil, blk
	}
	return done, nil
}

// storeFailure tells the breaker which store errors mean a sick Redis:
// unavailability and timeouts, not bad input or a caller that went away.
func storeFailure(err error) bool {
	switch {
	case errors.Is(err, push.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return true
	case errors.Is(err, push.ErrInvalidEvent), errors.Is(err, push.ErrInvalidTopic), errors.Is(err, push.ErrClosed):
		return false
	}
	return true
}

// guardedStore puts a circuit breaker (layer 4) in front of the store's
// request-path calls. An open breaker fails fast with an error that is
// push.ErrUnavailable (503 + Retry-After to publishers; browser-safe shed
// for new streams) and carries the breaker's retry hint.
type guardedStore struct {
	push.Store
	b *resilience.Breaker
	m *observability.Metrics // Redis call latency by operation and result
}

// Unwrap returns the guarded store (its region signals are read through it).
func (s guardedStore) Unwrap() push.Store { return s.Store }

func (s guardedStore) do(ctx context.Context, op string, fn func(context.Context) error) error {
	start := time.Now()
	err := s.b.Do(ctx, op, fn)
	var blk *resilience.Blocked
	result := "ok"
	switch {
	case errors.As(err, &blk):
		result = "breaker_open"
		err = fmt.Errorf("%w: %w", push.ErrUnavailable, blk)
	case err != nil:
		result = "error"
	}
	s.m.RedisCall(ctx, op, s.b.Target(), result, time.Since(start))
	return err
}

func (s guardedStore) Append(ctx context.Context, topic string, drafts []push.Draft) (res []push.AppendResult, err error) {
	err = s.do(ctx, "append", func(ctx context.Context) error {
		res, err = s.Store.Append(ctx, topic, drafts)
		return err
	})
	return res, err
}

func (s guardedStore) Info(ctx context.Context, topics []string) (res []push.StreamInfo, err error) {
	err = s.do(ctx, "info", func(ctx context.Context) error {
		res, err = s.Store.Info(ctx, topics)
		return err
	})
	return res, err
}

func (s guardedStore) Read(ctx context.Context, topic string, after uint64, limit int) (evs []push.Event, in push.StreamInfo, err error) {
	err = s.do(ctx, "read", func(ctx context.Context) error {
		evs, in, err = s.Store.Read(ctx, topic, after, limit)
		return err
	})
	return evs, in, err
}

func (s guardedStore) Ping(ctx context.Context) error {
	return s.do(ctx, "ping", s.Store.Ping)
}
