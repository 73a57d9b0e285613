package memstore_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/store/memstore"
	"github.com/heraldpush/herald/push/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, cfg storetest.Config) push.Store {
		s := memstore.New(memstore.Config{Retention: cfg.Retention, IdempotencyWindow: cfg.IdempotencyWindow})
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}

func TestNotDurableAndDefaults(t *testing.T) {
	s := memstore.New(memstore.Config{})
	defer s.Close()
	if s.Durable() {
		t.Fatal("memstore must report Durable() == false")
	}
	if s.Origin() != "local" {
		t.Fatalf("default origin %q", s.Origin())
	}
	if err := (memstore.Config{Origin: "Bad Origin"}).Validate(); err == nil {
		t.Fatal("Validate accepted a bad origin")
	}
	if err := (memstore.Config{Origin: "eu-west-1"}).Validate(); err != nil {
		t.Fatal(err)
	}
}

// A new process (a new Store) gets new epochs, so offsets restarting at 1
// never pair with an old epoch.
func TestEpochPerProcess(t *testing.T) {
	ctx := context.Background()
	a, b := memstore.New(memstore.Config{}), memstore.New(memstore.Config{})
	defer a.Close()
	defer b.Close()
	ra, _ := a.Append(ctx, "t", []push.Draft{{Type: "x"}})
	rb, _ := b.Append(ctx, "t", []push.Draft{{Type: "x"}})
	rc, _ := a.Append(ctx, "u", []push.Draft{{Type: "x"}})
	if ra[0].Epoch == rb[0].Epoch || ra[0].Epoch == rc[0].Epoch || len(ra[0].Epoch) != 16 {
		t.Fatalf("epochs %q %q %q: want distinct 16-hex-char epochs", ra[0].Epoch, rb[0].Epoch, rc[0].Epoch)
	}
}

// The hard cap bounds memory even when the policy sets no length bound.
func TestHardCap(t *testing.T) {
	s := memstore.New(memstore.Config{
		MaxEvents: 50,
		Retention: push.RetentionPolicy{Default: push.Retention{MaxAge: time.Hour}},
	})
	defer s.Close()
	ctx := context.Background()
	for i := 0; i < 500; i++ {
		if _, err := s.Append(ctx, "capped", []push.Draft{{Type: "x", Data: []byte("y")}}); err != nil {
			t.Fatal(err)
		}
	}
	in, _ := s.Info(ctx, []string{"capped"})
	if in[0].Length != 50 || in[0].First != 451 || in[0].Last != 500 {
		t.Fatalf("info %+v", in[0])
	}
}

// Idempotency entries are bounded per topic: the oldest keys are forgotten.
func TestIdempotencyBounded(t *testing.T) {
	s := memstore.New(memstore.Config{MaxIdempotencyKeys: 10})
	defer s.Close()
	ctx := context.Background()
	for i := 0; i < 20; i++ {
		if _, err := s.Append(ctx, "t", []push.Draft{{Type: "x", IdempotencyKey: fmt.Sprint("k", i)}}); err != nil {
			t.Fatal(err)
		}
	}
	old, _ := s.Append(ctx, "t", []push.Draft{{Type: "x", IdempotencyKey: "k0"}})
	recent, _ := s.Append(ctx, "t", []push.Draft{{Type: "x", IdempotencyKey: "k19"}})
	if old[0].Duplicate || !recent[0].Duplicate {
		t.Fatalf("old key remembered=%v, recent key remembered=%v; want false, true", old[0].Duplicate, recent[0].Duplicate)
	}
}

// Age trimming with an injected clock, and idempotency expiry by the clock.
func TestClock(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 1, 2, 3, 4, 5, 600_700_800, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	s := memstore.New(memstore.Config{
		Clock:             clock,
		IdempotencyWindow: time.Minute,
		Retention:         push.RetentionPolicy{Default: push.Retention{MaxLen: 100, MaxAge: time.Hour}},
	})
	defer s.Close()
	ctx := context.Background()
	r, _ := s.Append(ctx, "t", []push.Draft{{Type: "x", IdempotencyKey: "k"}})
	if !r[0].Time.Equal(now.Truncate(time.Millisecond)) {
		t.Fatalf("time %v, want %v (millisecond precision)", r[0].Time, now.Truncate(time.Millisecond))
	}
	advance(59 * time.Second)
	if r, _ := s.Append(ctx, "t", []push.Draft{{Type: "x", IdempotencyKey: "k"}}); !r[0].Duplicate {
		t.Fatal("key forgotten inside the window")
	}
	advance(2 * time.Second)
	if r, _ := s.Append(ctx, "t", []push.Draft{{Type: "x", IdempotencyKey: "k"}}); r[0].Duplicate || r[0].Offset != 2 {
		t.Fatalf("after the window: %+v", r[0])
	}
	advance(time.Hour - time.Second)
	evs, info, _ := s.Read(ctx, "t", 0, 10)
	if len(evs) != 1 || evs[0].Offset != 2 || info.First != 2 || info.Last != 2 {
		t.Fatalf("after MaxAge of the first event: %d events, %+v", len(evs), info)
	}
}

// Appends to many topics from many goroutines: exercised under -race.
func TestParallelTopics(t *testing.T) {
	s := memstore.New(memstore.Config{})
	defer s.Close()
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				topic := fmt.Sprintf("t%d", (g*7+i)%16)
				if _, err := s.Append(context.Background(), topic, []push.Draft{{Type: "x"}}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	topics := make([]string, 16)
	for i := range topics {
		topics[i] = fmt.Sprintf("t%d", i)
	}
	infos, _ := s.Info(context.Background(), topics)
	var total uint64
	for _, in := range infos {
		total += in.Last
	}
	if total != 8*200 {
		t.Fatalf("total offsets %d, want %d", total, 8*200)
	}
}

func benchmarkAppend(b *testing.B, batch, topics int) {
	// Retention bounds the run's memory below the store-wide MaxBytes.
	s := memstore.New(memstore.Config{Retention: push.RetentionPolicy{Default: push.Retention{MaxLen: 10000}}})
	defer s.Close()
	drafts := make([]push.Draft, batch)
	for i := range drafts {
		drafts[i] = push.Draft{Type: "bench", Data: []byte(`{"price":123.45,"sym":"ABC"}`)}
	}
	names := make([]string, topics)
	for i := range names {
		names[i] = fmt.Sprint("bench-", i)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := s.Append(ctx, names[i%topics], drafts); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}

func BenchmarkAppend(b *testing.B) {
	for _, batch := range []int{1, 10} {
		for _, topics := range []int{1, 64} {
			b.Run(fmt.Sprintf("batch=%d/topics=%d", batch, topics), func(b *testing.B) { benchmarkAppend(b, batch, topics) })
		}
	}
}

// The store-wide memory bound refuses appends instead of growing memory.
func TestMaxBytes(t *testing.T) {
	s := memstore.New(memstore.Config{MaxBytes: 64 << 10, Retention: push.RetentionPolicy{Default: push.Retention{MaxLen: 10}}})
	defer s.Close()
	ctx := context.Background()
	big := make([]byte, 1000)
	var refused error
	for i := 0; i < 200 && refused == nil; i++ {
		_, refused = s.Append(ctx, fmt.Sprint("t", i), []push.Draft{{Type: "x", Data: big}})
	}
	if !errors.Is(refused, push.ErrUnavailable) {
		t.Fatalf("no refusal at the memory limit: %v", refused)
	}
	// A topic at its MaxLen trims as it appends, but the store is still
	// over the limit: appends stay refused rather than growing memory.
	if _, err := s.Append(ctx, "t0", []push.Draft{{Type: "x"}}); !errors.Is(err, push.ErrUnavailable) {
		t.Fatalf("append over the limit: %v", err)
	}
}
