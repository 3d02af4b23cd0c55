package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every mutation still applies: its text appears exactly once in its file.
// A refactor that moves the text makes the mutation stale, and the bug it
// stands for untested; this says so in `make test`, not only in mutate-hand.
func TestEveryMutationApplies(t *testing.T) {
	root := filepath.Join("..", "..", "..")
	names := map[string]bool{}
	for _, m := range mutations {
		if names[m.name] {
			t.Errorf("two mutations are named %q", m.name)
		}
		names[m.name] = true
		src, err := os.ReadFile(filepath.Join(root, m.file))
		if err != nil {
			t.Errorf("%s: %v", m.name, err)
			continue
		}
		if n := strings.Count(string(src), m.find); n != 1 {
			t.Errorf("%s: its text appears %d times in %s", m.name, n, m.file)
		}
	}
}

// Every planted bug applies likewise, names an invariant of the soak's
// report, and is named once.
func TestEveryPlantedBugApplies(t *testing.T) {
	root := filepath.Join("..", "..", "..")
	names := map[string]bool{}
	kinds := map[int]bool{}
	for _, p := range plantedBugs {
		if names[p.name] {
			t.Errorf("two planted bugs are named %q", p.name)
		}
		names[p.name] = true
		if p.invariant < 1 || p.invariant > 5 {
			t.Errorf("%s: invariant %d: the soak has invariants 1 to 5", p.name, p.invariant)
		}
		kinds[p.invariant] = true
		for _, e := range p.edits {
			src, err := os.ReadFile(filepath.Join(root, e.file))
			if err != nil {
				t.Errorf("%s: %v", p.name, err)
				continue
			}
			if n := strings.Count(string(src), e.find); n != 1 {
				t.Errorf("%s: its text appears %d times in %s", p.name, n, e.file)
			}
		}
	}
	if len(kinds) != 5 {
		t.Errorf("planted bugs cover invariants %v: want one of each of 1 to 5", kinds)
	}
}

// The report's verdict lines are read as the soak prints them.
func TestFailedInvariantsReadsTheReport(t *testing.T) {
	out := `    invariants_test.go:121: 
        invariant 1 (no expired token): 900 reads; 0 violations: PASS
        invariant 2 (issued by the mount's fake): 900 reads; 3 violations: FAIL
            a note, before the violations
            t+61.2s mirakl/token/acme: audience soak-mirakl-acme-0,
            	want soak-mirakl-acme-1; nearest fault: role-write at t+60.0s
            t+61.4s second; nearest fault: role-write at t+60.0s
        invariant 3 (available): 900 reads; 0 violations: PASS
        invariant 4 (budget): 12 requests; 2 violations: FAIL (allowed by SOAK_ALLOW)
        invariant 5 (flat): 3 processes; 1 violations: FAIL
            t+90.0s grew: pid 1; nearest fault: none
`
	failed, first := failedInvariants(out)
	if len(failed) != 2 || failed[0] != 2 || failed[1] != 5 {
		t.Fatalf("failed = %v, want [2 5] (4 was allowed)", failed)
	}
	if want := "3 violations; first: t+61.2s mirakl/token/acme: audience soak-mirakl-acme-0, want soak-mirakl-acme-1; nearest fault: role-write at t+60.0s"; first[2] != want {
		t.Errorf("first[2] = %q, want %q", first[2], want)
	}
}
