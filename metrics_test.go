package mirakl

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// Every class describeOutcome can name is a series from the start.
func TestMetricsKnowEveryOutcome(t *testing.T) {
	t.Parallel()
	for _, err := range []error{
		nil,
		&UpstreamError{Kind: ErrCredentialsRefused},
		&UpstreamError{Kind: ErrUnavailable},
		&UpstreamError{Kind: ErrInvalidResponse},
		fmt.Errorf("token request cancelled: %w", context.Canceled),
		errors.New("building the token request: bad URL"),
	} {
		if outcome, _ := describeOutcome(err); !slices.Contains(requestOutcomes, outcome) {
			t.Errorf("describeOutcome(%v) = %q, which is not one of %v", err, outcome, requestOutcomes)
		}
	}
}

// A request's duration goes into its bucket, on the engine's clock.
func TestMetricsRequestDuration(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	m := env.backend.metrics
	start := env.clock.Now()
	m.requestDone(m.defaultRoleMetrics, start, start.Add(1500*time.Millisecond), nil)
	m.requestDone(m.defaultRoleMetrics, start, start.Add(40*time.Second), &UpstreamError{Kind: ErrUnavailable})

	var h dto.Metric
	if err := m.durations.Write(&h); err != nil {
		t.Fatal(err)
	}
	if got := h.GetHistogram().GetSampleSum(); got != 41.5 {
		t.Errorf("sum of durations %v, want 41.5", got)
	}
	for _, b := range h.GetHistogram().GetBucket() {
		want := uint64(0)
		switch le := b.GetUpperBound(); {
		case le >= 60:
			want = 2
		case le >= 2.5:
			want = 1
		}
		if b.GetCumulativeCount() != want {
			t.Errorf("bucket le=%v: %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
		}
	}
}

// Counting a cached read is an atomic increment: it allocates nothing.
func TestCountingACachedReadAllocatesNothing(t *testing.T) {
	m := newTestEnv(t).backend.metrics
	if allocs := testing.AllocsPerRun(1000, func() { m.tokenRead(nil, defaultRole, false, nil) }); allocs != 0 {
		t.Errorf("counting a cached read allocates %v times", allocs)
	}
}

// BenchmarkCountCachedRead is what counting adds to a cached read (against
// the read's few microseconds): one atomic increment, shared by all cores in
// the parallel case.
func BenchmarkCountCachedRead(b *testing.B) {
	m := newMountMetrics(&backend{})
	b.ReportAllocs()
	for b.Loop() {
		m.tokenRead(nil, defaultRole, false, nil)
	}
}

func BenchmarkCountCachedReadParallel(b *testing.B) {
	m := newMountMetrics(&backend{})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.tokenRead(nil, defaultRole, false, nil)
		}
	})
}
