package observability

import (
	"context"
	"encoding/binary"
	"math/rand/v2"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Span names. They are fixed strings (no topic in the name) so trace
// backends group them; the topic is an attribute.
const (
	// SpanPublish is the producer span of one publish request (StartPublish).
	SpanPublish = "herald.publish"
	// SpanSession is the server span of one SSE connection (StartSession).
	SpanSession = "herald.session"
	// SpanDeliver is the consumer span of one event written to one
	// subscriber (StartDelivery); a new root linked to the publish span.
	SpanDeliver = "herald.deliver"
)

// Span attribute keys.
const (
	KeySessionID = attribute.Key("herald.session.id")  // session id of an SSE connection
	KeyTopics    = attribute.Key("herald.topics")      // []string: topics of a connection
	KeyCursor    = attribute.Key("herald.cursor")      // resume cursor (Last-Event-ID) as received
	KeyResumed   = attribute.Key("herald.resumed")     // bool: the connection resumed from a cursor
	KeyReset     = attribute.Key("herald.reset")       // bool: resume could not be exact; a reset event was sent
	KeyReplayed  = attribute.Key("herald.replayed")    // int: events replayed from history on connect
	KeyTransport = attribute.Key("herald.transport")   // string: the stream's transport, sse or ws
	KeyNode      = attribute.Key("herald.node")        // node that served the span
	KeyOffset    = attribute.Key("herald.offset")      // int: offset of the event in its stream
	KeyOrigin    = attribute.Key("herald.origin")      // origin region of the event's stream
	KeyRegion    = semconv.CloudRegionKey              // "cloud.region"
	KeyTopic     = semconv.MessagingDestinationNameKey // "messaging.destination.name"
)

// Link attribute that says why a span is linked; values below.
const (
	KeyLinkKind          = attribute.Key("herald.link")
	LinkKindPublish      = "publish"          // delivery -> the publish of the event
	LinkKindSession      = "session"          // delivery -> the connection it was written to
	LinkKindPreviousConn = "previous_session" // session -> the previous connection of the same client
)

// messagingSystem is the messaging.system of Herald's spans.
const messagingSystem = "herald"

// SessionAttrs describe an SSE connection for its span. Zero fields are
// omitted, except Node and Region which default to the Telemetry's.
type SessionAttrs struct {
	SessionID string
	Topics    []string
	Cursor    string
	Resumed   bool
	Reset     bool
	Replayed  int
	Node      string
	Region    string
	// Transport is the stream's transport (TransportSSE, TransportWS).
	Transport string
}

// DeliveryAttrs describe one event written to one subscriber. Passed by
// value so that the unsampled path of StartDelivery does not allocate.
type DeliveryAttrs struct {
	Topic  string
	Origin string
	Offset int64
}

// producerSpan is StartPublish's span kind, built once (it was an
// allocation per publish). Read-only.
var producerSpan = trace.WithSpanKind(trace.SpanKindProducer)

// StartPublish starts the producer span of a publish to topic, as a child of
// the span in ctx (the HTTP server span, or the remote parent extracted from
// the request's traceparent with Propagator). Record the stored offset with
// KeyOffset and store EventTraceparent(ctx) with the event.
//
// A node that exports no traces builds no span (see StartSpan).
func (t *Telemetry) StartPublish(ctx context.Context, topic string) (context.Context, trace.Span) {
	if t != nil && !t.keepSpans {
		return t.unrecordedSpan(ctx, SpanPublish, trace.SpanKindProducer, nil)
	}
	return t.Tracer().Start(ctx, SpanPublish, producerSpan,
		trace.WithAttributes(semconv.MessagingSystemKey.String(messagingSystem),
			semconv.MessagingOperationTypeSend, KeyTopic.String(topic)))
}

// StartSpan starts a span named name of kind kind under ctx, with opts
// (which must carry kind when the SDK builds the span), like
// Tracer().Start. A node that exports no traces (no span processor) builds
// no span: as for StartSession, the span context is its own, sampled as the
// SDK's would be, carried by a non-recording span, so traceparents stored
// with events and the trace ids of logs and exemplars are what they were,
// for a few allocations instead of the SDK span's (issue 20 item 4: the
// publish path's server, publish and store spans).
func (t *Telemetry) StartSpan(ctx context.Context, name string, kind trace.SpanKind, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	if t != nil && !t.keepSpans {
		return t.unrecordedSpan(ctx, name, kind, nil)
	}
	return t.Tracer().Start(ctx, name, opts...)
}

// StartSession starts the server span of an SSE connection. Its parent is
// the span in ctx (a traceparent the client sent, extracted with
// Propagator); links join it to earlier connections of the same client
// (LinkFromTraceparent on a cookie or cursor value): untrusted values are
// links, never parents. A session without a parent is sampled when any link
// is sampled, so a reconnect chain is traced as a whole.
//
// A node that exports no traces (no span processor) builds no span: the
// session gets a span context of its own, sampled as the SDK's would be,
// carried by a non-recording span, so its traceparent still goes out and
// links the next connection, for a few allocations instead of the SDK
// span's attributes, options and links (issue 20 item 4: connect CPU).
func (t *Telemetry) StartSession(ctx context.Context, a SessionAttrs, links ...trace.Link) (context.Context, trace.Span) {
	if t != nil && !t.keepSpans {
		return t.unrecordedSpan(ctx, SpanSession, trace.SpanKindServer, links)
	}
	attrs := make([]attribute.KeyValue, 0, 8)
	if a.SessionID != "" {
		attrs = append(attrs, KeySessionID.String(a.SessionID))
	}
	if len(a.Topics) > 0 {
		attrs = append(attrs, KeyTopics.StringSlice(a.Topics))
	}
	if a.Cursor != "" {
		attrs = append(attrs, KeyCursor.String(a.Cursor))
	}
	attrs = append(attrs, KeyResumed.Bool(a.Resumed))
	if a.Reset {
		attrs = append(attrs, KeyReset.Bool(true))
	}
	if a.Replayed > 0 {
		attrs = append(attrs, KeyReplayed.Int(a.Replayed))
	}
	if a.Transport != "" {
		attrs = append(attrs, KeyTransport.String(a.Transport))
	}
	node, region := a.Node, a.Region
	if t != nil {
		if node == "" {
			node = t.cfg.Node
		}
		if region == "" {
			region = t.cfg.Region
		}
	}
	if node != "" {
		attrs = append(attrs, KeyNode.String(node))
	}
	if region != "" {
		attrs = append(attrs, KeyRegion.String(region))
	}
	if len(links) > 0 {
		// Copy: the caller's slice is not ours to change.
		ls := make([]trace.Link, len(links))
		for i, l := range links {
			if len(l.Attributes) == 0 {
				l.Attributes = []attribute.KeyValue{KeyLinkKind.String(LinkKindPreviousConn)}
			}
			ls[i] = l
		}
		links = ls
	}
	return t.Tracer().Start(ctx, SpanSession,
		trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attrs...),
		trace.WithLinks(links...))
}

// StartDelivery starts the consumer span of one event written to one
// subscriber. The span is a new root LINKED to the publish span named by
// publishTraceparent (stored with the event) and to the session span in ctx
// — never their child, so one publish fanned out to thousands of
// subscribers does not make one giant trace. It is recorded only when the
// publish was sampled, the node's DeliverySpanRate allows and the node
// exports traces; otherwise it returns ctx and a non-recording span without
// allocating. End the span
// after the write.
func (t *Telemetry) StartDelivery(ctx context.Context, publishTraceparent string, d DeliveryAttrs) (context.Context, trace.Span) {
	if t == nil || !t.keepSpans || !traceparentSampled(publishTraceparent) {
		// A node that exports no traces builds no delivery span: unlike
		// the publish and session spans, a delivery's span context goes
		// nowhere (no traceparent is stored or sent from it), so nothing
		// would ever see it but the latency exemplar, which would name a
		// trace no backend has.
		return ctx, noopSpan()
	}
	pub, ok := parseTraceparent(publishTraceparent)
	if !ok || !t.deliveries.Allow() {
		return ctx, noopSpan()
	}
	links := []trace.Link{{SpanContext: pub, Attributes: []attribute.KeyValue{KeyLinkKind.String(LinkKindPublish)}}}
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		links = append(links, trace.Link{SpanContext: sc, Attributes: []attribute.KeyValue{KeyLinkKind.String(LinkKindSession)}})
	}
	attrs := []attribute.KeyValue{
		semconv.MessagingSystemKey.String(messagingSystem), semconv.MessagingOperationTypeProcess,
		KeyTopic.String(d.Topic), KeyOffset.Int64(d.Offset),
	}
	if d.Origin != "" {
		attrs = append(attrs, KeyOrigin.String(d.Origin))
	}
	return t.Tracer().Start(ctx, SpanDeliver,
		trace.WithNewRoot(),
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithLinks(links...),
		trace.WithAttributes(attrs...))
}

// noopSpan returns the non-recording span used when nothing is traced (a
// zero-size value: no allocation).
func noopSpan() trace.Span { return trace.SpanFromContext(context.Background()) }

// EventTraceparent returns the W3C traceparent of the span in ctx
// ("00-<trace-id>-<span-id>-<flags>"), or "" when ctx has no valid span
// context. Store it with the event so deliveries can link to the publish.
func EventTraceparent(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return ""
	}
	const hexdigits = "0123456789abcdef"
	var b [55]byte
	b[0], b[1], b[2] = '0', '0', '-'
	tid, sid := sc.TraceID(), sc.SpanID()
	for i, c := range tid {
		b[3+2*i], b[4+2*i] = hexdigits[c>>4], hexdigits[c&0xf]
	}
	b[35] = '-'
	for i, c := range sid {
		b[36+2*i], b[37+2*i] = hexdigits[c>>4], hexdigits[c&0xf]
	}
	b[52] = '-'
	f := byte(sc.TraceFlags())
	b[53], b[54] = hexdigits[f>>4], hexdigits[f&0xf]
	return string(b[:])
}

// LinkFromTraceparent parses a W3C traceparent from an untrusted source (a
// cookie, a cursor, a stored event) and returns a link to it. It reports
// false for anything that is not a well-formed traceparent with non-zero
// ids; the link's span context is marked remote. Use the link, never the
// span context as a parent.
func LinkFromTraceparent(s string) (trace.Link, bool) {
	sc, ok := parseTraceparent(s)
	if !ok {
		return trace.Link{}, false
	}
	return trace.Link{SpanContext: sc}, true
}

// traceparentSampled is a cheap pre-check of the sampled flag, so unsampled
// deliveries skip parsing.
func traceparentSampled(s string) bool {
	if len(s) < 55 {
		return false
	}
	f, ok := unhex(s[54])
	return ok && f&1 == 1
}

// parseTraceparent implements the W3C Trace Context parsing rules as the
// OpenTelemetry propagator does: version 00 is exactly 55 characters with
// flags 00-03; a higher version (not ff) may carry more fields after a '-'.
// Lower-case hex only; all-zero ids are invalid.
func parseTraceparent(s string) (trace.SpanContext, bool) {
	if len(s) < 55 || s[2] != '-' || s[35] != '-' || s[52] != '-' {
		return trace.SpanContext{}, false
	}
	ver, ok := hexByte(s[0], s[1])
	if !ok || ver == 0xff || (ver == 0 && len(s) != 55) || (len(s) > 55 && s[55] != '-') {
		return trace.SpanContext{}, false
	}
	var tid trace.TraceID
	for i := range tid {
		if tid[i], ok = hexByte(s[3+2*i], s[4+2*i]); !ok {
			return trace.SpanContext{}, false
		}
	}
	var sid trace.SpanID
	for i := range sid {
		if sid[i], ok = hexByte(s[36+2*i], s[37+2*i]); !ok {
			return trace.SpanContext{}, false
		}
	}
	flags, ok := hexByte(s[53], s[54])
	if !ok || !tid.IsValid() || !sid.IsValid() || ver == 0 && flags > 3 {
		return trace.SpanContext{}, false // version 00 defines only the sampled and random flags
	}
	return trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    tid,
		SpanID:     sid,
		TraceFlags: trace.TraceFlags(flags) & (trace.FlagsSampled | trace.FlagsRandom),
		Remote:     true,
	}), true
}

func hexByte(hi, lo byte) (byte, bool) {
	h, ok1 := unhex(hi)
	l, ok2 := unhex(lo)
	return h<<4 | l, ok1 && ok2
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// unrecordedSpan starts a span that is not built, for a node whose tracer
// provider has no span processor: a fresh span id in the parent's trace (or
// a fresh trace), with the sampled flag and trace state the node's sampler
// decides, as the SDK would give the span it builds and then drops.
func (t *Telemetry) unrecordedSpan(ctx context.Context, name string, kind trace.SpanKind, links []trace.Link) (context.Context, trace.Span) {
	parent := trace.SpanContextFromContext(ctx)
	var tid trace.TraceID
	if parent.IsValid() {
		tid = parent.TraceID()
	} else {
		for !tid.IsValid() {
			binary.BigEndian.PutUint64(tid[:8], rand.Uint64())
			binary.BigEndian.PutUint64(tid[8:], rand.Uint64())
		}
	}
	var sid trace.SpanID
	for !sid.IsValid() {
		binary.BigEndian.PutUint64(sid[:], rand.Uint64())
	}
	res := t.sampler.ShouldSample(sdktrace.SamplingParameters{ParentContext: ctx, TraceID: tid, Name: name, Kind: kind, Links: links})
	var flags trace.TraceFlags
	if res.Decision == sdktrace.RecordAndSample {
		flags = trace.FlagsSampled
	}
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: flags, TraceState: res.Tracestate})
	ctx = trace.ContextWithSpanContext(ctx, sc)
	return ctx, trace.SpanFromContext(ctx)
}
