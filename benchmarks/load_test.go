//go:build bench

package benchmarks

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/vault/api"
)

// A stretch is one run of reads of one path by a set of clients, each
// reading in a loop until the deadline: the unit that rounds interleave.
type stretch struct {
	latencies []time.Duration // one per successful read
	elapsed   time.Duration   // from the first read's start to the last read's end
	failures  int
	firstErr  error

	// CPU time that the vault server and the read's plugin process (none
	// for kv1) spent during the stretch: less sensitive to a busy machine
	// than latency, since time spent waiting for a core is not counted.
	vaultCPU, pluginCPU time.Duration
}

func (s stretch) reads() int { return len(s.latencies) }

// throughput is successful reads per second.
func (s stretch) throughput() float64 {
	if s.elapsed <= 0 {
		return 0
	}
	return float64(s.reads()) / s.elapsed.Seconds()
}

// observeFunc checks one answer; it runs on the reading goroutines, so it
// must be safe for concurrent use. A non-nil error counts the read as failed.
type observeFunc func(*api.Secret) error

// readFor has every client read path in a loop for d, each on its own
// keep-alive connection, waiting pace between reads (0: as fast as Vault answers).
func readFor(ctx context.Context, clients []*api.Client, path string, d, pace time.Duration, observe observeFunc) stretch {
	type worker struct {
		latencies []time.Duration
		failures  int
		firstErr  error
	}
	workers := make([]worker, len(clients))
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Go(func() {
			w := &workers[i]
			for time.Now().Before(deadline) {
				began := time.Now()
				secret, err := c.Logical().ReadWithContext(ctx, path)
				took := time.Since(began)
				if err == nil {
					err = observe(secret)
				}
				if err != nil {
					w.failures++
					if w.firstErr == nil {
						w.firstErr = err
					}
				} else {
					w.latencies = append(w.latencies, took)
				}
				if pace > 0 {
					time.Sleep(pace)
				}
			}
		})
	}
	wg.Wait()
	s := stretch{elapsed: time.Since(start)}
	for _, w := range workers {
		s.latencies = append(s.latencies, w.latencies...)
		s.failures += w.failures
		if s.firstErr == nil {
			s.firstErr = w.firstErr
		}
	}
	return s
}

// requireData is the check of a plain read: an answer with data.
func requireData(secret *api.Secret) error {
	if secret == nil || len(secret.Data) == 0 {
		return errors.New("no data in the answer")
	}
	return nil
}

// requireLease is the check of a lease-issuing read: data under a lease.
func requireLease(secret *api.Secret) error {
	if err := requireData(secret); err != nil {
		return err
	}
	if secret.LeaseID == "" || secret.LeaseDuration <= 0 {
		return fmt.Errorf("no lease in the answer (lease %q, %ds)", secret.LeaseID, secret.LeaseDuration)
	}
	return nil
}

// series is every stretch of one read at one concurrency, across rounds.
type series struct {
	stretches []stretch
}

func (s *series) add(st stretch) { s.stretches = append(s.stretches, st) }

func (s *series) merged() stretch {
	var m stretch
	for _, st := range s.stretches {
		m.latencies = append(m.latencies, st.latencies...)
		m.elapsed += st.elapsed
		m.failures += st.failures
		m.vaultCPU += st.vaultCPU
		m.pluginCPU += st.pluginCPU
		if m.firstErr == nil {
			m.firstErr = st.firstErr
		}
	}
	return m
}

// summary is what the table shows of a stretch or a series.
type summary struct {
	p50, p99   time.Duration
	throughput float64 // reads per second
	reads      int

	vaultCPU, pluginCPU time.Duration // per read
}

func summarize(st stretch) summary {
	sorted := slices.Clone(st.latencies)
	slices.Sort(sorted)
	return summary{
		p50:        percentile(sorted, 0.50),
		p99:        percentile(sorted, 0.99),
		throughput: st.throughput(),
		reads:      st.reads(),
		vaultCPU:   perRead(st.vaultCPU, st.reads()),
		pluginCPU:  perRead(st.pluginCPU, st.reads()),
	}
}

func perRead(d time.Duration, reads int) time.Duration {
	if reads == 0 {
		return 0
	}
	return d / time.Duration(reads)
}

// percentile of sorted latencies, nearest rank.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(p*float64(len(sorted)) + 0.999999)
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// ratio compares a read with the one under it: how many times slower it is,
// in p50, in p99 and in time per read at full load (the inverse of throughput).
// cpu compares the CPU both processes spent per read.
type ratio struct {
	p50, p99, perRead, cpu float64
}

func compare(over, under summary) ratio {
	return ratio{
		p50:     float64(over.p50) / float64(under.p50),
		p99:     float64(over.p99) / float64(under.p99),
		perRead: under.throughput / over.throughput,
		cpu:     float64(over.vaultCPU+over.pluginCPU) / float64(under.vaultCPU+under.pluginCPU),
	}
}

// roundRatios are the ratios of each round's stretches alone: their spread
// shows how much the machine's noise moved the figure.
func roundRatios(over, under *series) []ratio {
	n := min(len(over.stretches), len(under.stretches))
	rs := make([]ratio, n)
	for i := range n {
		rs[i] = compare(summarize(over.stretches[i]), summarize(under.stretches[i]))
	}
	return rs
}
