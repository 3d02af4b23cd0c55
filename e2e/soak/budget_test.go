//go:build soak

package soak

import (
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/fakemirakl"
)

// Invariant 4's one allowance at a failover (dueSuccessors) takes the second
// request for a successor already due around a fault that replaced the
// plugin process, and nothing else: it must stay able to fail. No cluster:
// made-up records of one mount.
func TestDueSuccessorsAllowsOnlyASecondRequestForADueSuccessor(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 8, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	// Token A lives 90s from t0: its refresh point is 45s left, at t0+45s.
	// Token B is issued at t0+49s.
	issued := map[string]fakemirakl.IssuedToken{
		"A": {Token: "A", IssuedAt: t0, ExpiresAt: at(90)},
		"B": {Token: "B", IssuedAt: at(49), ExpiresAt: at(139)},
	}
	reads := func(switchToB float64) []read {
		var out []read
		for s := 1.0; s < 80; s += 0.5 {
			tok := "A"
			if switchToB > 0 && s >= switchToB {
				tok = "B"
			}
			out = append(out, read{start: at(s - 0.1), end: at(s), token: tok})
		}
		return out
	}
	requests := func(times ...float64) []fakemirakl.Request {
		var out []fakemirakl.Request
		for _, s := range times {
			out = append(out, fakemirakl.Request{Arrived: at(s)})
		}
		return out
	}
	killPluginAt := func(s float64) []fault { return []fault{{kind: killPlugin, start: at(s), end: at(s)}} }
	for _, c := range []struct {
		name     string
		seen     []fakemirakl.Request
		served   []read
		faults   []fault
		excusing []int
	}{
		{"the old process's refresh, then the new one's", requests(48, 52), reads(0), killPluginAt(50), []int{1}},
		{"a third request is not allowed", requests(48, 52, 53), reads(0), killPluginAt(50), []int{1}},
		{"a reload: the first during it, the second after", requests(49.5, 51.5), reads(0), []fault{{kind: pluginReload, start: at(49), end: at(50)}}, []int{1}},
		{"two failovers, one each", requests(48, 52, 58, 62), reads(0), append(killPluginAt(50), fault{kind: stepDown, start: at(60), end: at(61)}), []int{1, 3}},
		{"the first not yet due", requests(40, 52), reads(0), killPluginAt(50), nil},
		{"both after the fault: the new process asked twice", requests(51, 52), reads(0), killPluginAt(50), nil},
		{"both before the fault", requests(46, 48), reads(0), killPluginAt(50), nil},
		{"no fault", requests(48, 52), reads(0), nil, nil},
		{"a config rewrite replaces no process", requests(48, 52), reads(0), []fault{{kind: configRewrite, start: at(50), end: at(50.3)}}, nil},
		{"a Mirakl window replaces no process", requests(48, 52), reads(0), []fault{{kind: miraklUnavailable, start: at(50), end: at(55)}}, nil},
		{"the successor was served in between", requests(48, 52), reads(49.5), killPluginAt(50), nil},
		{"too long after the fault", requests(48, 50+afterFailover.Seconds()+1), reads(0), killPluginAt(50), nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := slices.Sorted(maps.Keys(dueSuccessors(c.seen, c.served, issued, c.faults)))
			if !slices.Equal(got, c.excusing) {
				t.Errorf("allowed requests %v, want %v", got, c.excusing)
			}
		})
	}
}
