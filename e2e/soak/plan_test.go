//go:build soak

package soak

import (
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"
)

func planFor(seed uint64, d time.Duration) []plannedFault {
	return planFaults(rand.New(rand.NewPCG(seed, seed^seedMix)), d) //nolint:gosec // G404: a replayable schedule.
}

// A seed replays its schedule, another seed plays another, and every
// schedule keeps to its shape: Mirakl windows apart from one another, every
// fault between the warm-up and the quiet tail.
func TestPlanReplaysAndKeepsItsShape(t *testing.T) {
	for _, d := range []time.Duration{time.Minute, 10 * time.Minute, 30 * time.Minute} {
		a, b := planFor(42, d), planFor(42, d)
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("%s: seed 42 planned two schedules", d)
		}
		if reflect.DeepEqual(a, planFor(43, d)) {
			t.Fatalf("%s: seeds 42 and 43 planned the same schedule", d)
		}
		kinds := map[faultKind]bool{}
		var windowEnd time.Duration
		for _, f := range a {
			kinds[f.kind] = true
			if f.at < min(20*time.Second, d/5) || f.at+f.length > d-min(30*time.Second, d/5) {
				t.Errorf("%s: %s at %s for %s lies outside the warm-up and the tail", d, f.kind, f.at, f.length)
			}
			if slices.Contains(miraklFaults, f.kind) {
				if f.at < windowEnd {
					t.Errorf("%s: %s at %s overlaps the window before, until %s", d, f.kind, f.at, windowEnd)
				}
				windowEnd = f.at + f.length
				if len(f.mounts) == 0 {
					t.Errorf("%s: %s at %s concerns no mount", d, f.kind, f.at)
				}
			}
			if slices.Contains(roleFaults, f.kind) && (len(f.mounts) != 1 || !slices.Contains(roleNames, f.role)) {
				t.Errorf("%s: %s at %s concerns mounts %v, role %q: want one mount and one of %v", d, f.kind, f.at, f.mounts, f.role, roleNames)
			}
		}
		if d >= 10*time.Minute && (!kinds[roleWrite] || !kinds[roleRecreate]) {
			t.Errorf("%s: the schedule writes no role or re-creates none: %v", d, kinds)
		}
		if d >= 10*time.Minute && len(kinds) < len(miraklFaults)+len(clusterFaults)+len(roleFaults)-2 {
			t.Errorf("%s: only %d kinds of fault in the schedule: %v", d, len(kinds), kinds)
		}
	}
	ci := namedSeeds["ci"]
	kinds := map[faultKind]bool{}
	for _, f := range planFor(ci.seed, ci.duration) {
		kinds[f.kind] = true
	}
	if !kinds[killLeader] || len(kinds) < 5 {
		t.Errorf("CI's seed plays %v: want a leader killed among at least 5 kinds", kinds)
	}
}
