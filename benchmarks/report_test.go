//go:build bench

package benchmarks

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// EnvRows names the file that receives the table rows, for scripts/bench.sh
// to put under the in-process rows. Unset: the rows are only logged.
const EnvRows = "BENCH_ROWS"

// Verdicts of a row. A figure without a goal is information only.
const (
	verdictMet    = "met"
	verdictMissed = "**MISSED**"
	verdictNone   = ""
)

func verdict(met bool) string {
	if met {
		return verdictMet
	}
	return verdictMissed
}

// report collects rows of the markdown table: what was measured, the figure,
// the goal, and whether the figure meets it.
type report struct {
	rows []string
}

func (r *report) add(what, figure, goal, verdict string) {
	r.rows = append(r.rows, fmt.Sprintf("| %s | %s | %s | %s |", what, figure, goal, verdict))
}

// write logs the rows and writes them to $BENCH_ROWS.
func (r *report) write(t *testing.T) {
	t.Helper()
	table := strings.Join(r.rows, "\n") + "\n"
	t.Logf("real-Vault rows:\n| What | Figure | Goal | |\n|---|---|---|---|\n%s", table)
	if path := os.Getenv(EnvRows); path != "" {
		if err := os.WriteFile(path, []byte(table), 0o644); err != nil {
			t.Errorf("writing %s: %v", path, err)
		}
	}
}

func ms(d time.Duration) string {
	switch {
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
	case d < 100*time.Millisecond:
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
}

func (s summary) String() string {
	return fmt.Sprintf("p50 %s · p99 %s · %.0f reads/s", ms(s.p50), ms(s.p99), s.throughput)
}

func (r ratio) String() string {
	return fmt.Sprintf("p50 %.2fx · p99 %.2fx · time per read %.2fx · CPU per read %.2fx", r.p50, r.p99, r.perRead, r.cpu)
}

// cpuString is the CPU a read cost Vault and its plugin.
func (s summary) cpuString() string {
	out := fmt.Sprintf("vault %s", us(s.vaultCPU))
	if s.pluginCPU > 0 {
		out += fmt.Sprintf(" + plugin %s", us(s.pluginCPU))
	}
	return out
}

func us(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond)) }

// spread is the range of one ratio across rounds, such as "0.96–1.10x".
func spread(rs []ratio, pick func(ratio) float64) string {
	if len(rs) == 0 {
		return "-"
	}
	vs := make([]float64, len(rs))
	for i, r := range rs {
		vs[i] = pick(r)
	}
	return fmt.Sprintf("%.2f–%.2fx", slices.Min(vs), slices.Max(vs))
}

func mib(kib int) string { return fmt.Sprintf("%.1f MiB", float64(kib)/1024) }
