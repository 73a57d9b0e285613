package observability

import (
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// counterVec counts by label values on atomics that the Metrics callback
// reports through an observable instrument (cumulative, as a synchronous
// counter would be). Recording is one map read and one atomic add: no
// attribute set, exemplar or aggregator of the SDK on the caller's path.
// It carries the counters every stream connect updates
// (herald_stream_connects_total, herald_resumes_total,
// herald_streams_open): on a node taking a connect storm they ran the
// SDK's measure path three times per connect, from a cold cache (issue 20
// item 4, docs/benchmarks.md, session 14). Such series carry no exemplars.
// The map is copy-on-write (lock-free reads); beyond maxCachedAttrSets
// label sets, further ones count in one series marked
// otel.metric.overflow=true, as the SDK's own cardinality limit does.
type counterVec[K comparable] struct {
	build    func(K) attribute.Set
	m        cowMap[K, *counterCell]
	overflow counterCell
}

type counterCell struct {
	n   atomic.Int64
	opt metric.ObserveOption
}

func newCounterVec[K comparable](build func(K) attribute.Set) *counterVec[K] {
	c := &counterVec[K]{build: build}
	c.overflow.opt = metric.WithAttributeSet(attribute.NewSet(attribute.Bool("otel.metric.overflow", true)))
	return c
}

// add adds d to k's series, creating it (at zero) first if need be.
func (c *counterVec[K]) add(k K, d int64) {
	c.m.get(k,
		func() *counterCell { return &counterCell{opt: metric.WithAttributeSet(c.build(k))} },
		func() *counterCell { return &c.overflow },
	).n.Add(d)
}

// observe reports every series to inst.
func (c *counterVec[K]) observe(o metric.Observer, inst metric.Int64Observable) {
	c.m.each(func(e *counterCell) { o.ObserveInt64(inst, e.n.Load(), e.opt) })
	if n := c.overflow.n.Load(); n != 0 {
		o.ObserveInt64(inst, n, c.overflow.opt)
	}
}
