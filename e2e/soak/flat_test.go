//go:build soak

package soak

import (
	"strings"
	"testing"
	"time"
)

// Invariant 5's judgement of one process fails a leak of each kind it
// samples, passes a flat process, and leaves goroutines out when only one
// sample knows them. No cluster: made-up samples.
func TestJudgeProcessFailsEachKindOfGrowth(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 8, 0, 0, 0, time.UTC)
	at := func(tm time.Time) string { return tm.Sub(t0).String() }
	flat := func() []procSample {
		var ps []procSample
		for s := 0; s <= 60; s += 5 {
			ps = append(ps, procSample{at: t0.Add(time.Duration(s) * time.Second), node: "node1", pid: 7,
				rss: 30 << 20, threads: 9, fds: 19, goroutines: 33})
		}
		return ps
	}
	grown := func(change func(*procSample)) []procSample {
		ps := flat()
		change(&ps[len(ps)-1])
		return ps
	}
	cases := []struct {
		name   string
		ps     []procSample
		grew   bool
		knows  bool
		within string
	}{
		{"flat", flat(), false, true, "goroutines 33 -> 33"},
		{"RSS", grown(func(p *procSample) { p.rss += 17 << 20 }), true, true, "RSS 30.0 -> 47.0 MiB"},
		{"threads", grown(func(p *procSample) { p.threads += 11 }), true, true, "threads 9 -> 20"},
		{"fds", grown(func(p *procSample) { p.fds += 21 }), true, true, "fds 19 -> 40"},
		{"goroutines", grown(func(p *procSample) { p.goroutines += maxGoroutineGrowth + 1 }), true, true, "goroutines 33 -> 84"},
		{"goroutines within bounds", grown(func(p *procSample) { p.goroutines += maxGoroutineGrowth }), false, true, "goroutines 33 -> 83"},
		{"goroutines known once", func() []procSample {
			ps := flat()
			for i := range ps {
				ps[i].goroutines = -1
			}
			ps[3].goroutines = 10
			return ps
		}(), false, false, "fds 19 -> 19"},
		// Before the warm-up a process is still starting: not compared.
		{"goroutines fewer during the warm-up", func() []procSample {
			ps := flat()
			ps[0].goroutines = 0
			ps[len(ps)-1].goroutines = 73
			return ps
		}(), false, true, "goroutines 33 -> 73"},
		// A standby's process, then the active node's after a failover:
		// only the samples that know goroutines are compared.
		{"goroutines known late, grown", func() []procSample {
			ps := flat()
			for i := range ps[:8] {
				ps[i].goroutines = -1
			}
			ps[len(ps)-1].goroutines = 33 + maxGoroutineGrowth + 1
			return ps
		}(), true, true, "goroutines 33 -> 84 (40s..1m0s)"},
	}
	for _, c := range cases {
		j, ok := judgeProcess(c.ps, 20*time.Second, 10*time.Second, at)
		if !ok {
			t.Errorf("%s: not judged", c.name)
			continue
		}
		if j.grew != c.grew || j.goroutinesKnown != c.knows || !strings.Contains(j.growth, c.within) {
			t.Errorf("%s: grew %v, goroutines known %v, %q; want %v, %v, containing %q", c.name, j.grew, j.goroutinesKnown, j.growth, c.grew, c.knows, c.within)
		}
	}
	if _, ok := judgeProcess(flat()[:5], 20*time.Second, 10*time.Second, at); ok {
		t.Error("a process that lived 20s was judged past a 20s warm-up and a 10s span")
	}
}
