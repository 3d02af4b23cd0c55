package vaulttest

import (
	"slices"
	"testing"
)

// The cluster's record of times with several active nodes: a look that sees
// several opens one (or widens the one open); a look that sees at most one
// ends it, unless a node that had lost the lead did not answer it (it may be
// draining its requests still). The node that became active last is kept,
// and the others are the stale ones.
func TestSeveralActiveEpisodes(t *testing.T) {
	n1, n2, n3 := &Server{Opts: Options{Name: "node1"}}, &Server{Opts: Options{Name: "node2"}}, &Server{Opts: Options{Name: "node3"}}
	c := &Cluster{Nodes: []*Server{n1, n2, n3}}

	c.record([]*Server{n1}, nil, n1)
	if got := c.SeveralActiveEpisodes(); len(got) != 0 {
		t.Fatalf("one active node recorded %+v", got)
	}
	c.record([]*Server{n1, n2}, nil, nil)      // neither answers sys/leader yet
	c.record([]*Server{n1, n2, n3}, nil, n3)   // widened; n3 took over
	c.record([]*Server{n2, n3}, nil, nil)      // no answer this time: n3 stays
	c.record([]*Server{n3}, []*Server{n1}, n3) // n1 silent: it may still drain
	if got := c.SeveralActiveEpisodes(); len(got) != 1 || !got[0].End.IsZero() {
		t.Fatalf("a look without an answer from a stale node ended the episode: %+v", got)
	}
	if got := c.staleNow(); !slices.Equal(got, []string{"node1", "node2"}) {
		t.Errorf("stale now %v", got)
	}
	c.record([]*Server{n3}, nil, n3) // ended
	if got := c.staleNow(); got != nil {
		t.Errorf("stale now %v after the end", got)
	}
	c.record([]*Server{n1, n3}, nil, n1) // a second one
	got := c.SeveralActiveEpisodes()
	if len(got) != 2 {
		t.Fatalf("%d episodes, want 2: %+v", len(got), got)
	}
	first, second := got[0], got[1]
	if !slices.Equal(first.Nodes, []string{"node1", "node2", "node3"}) || first.Newest != "node3" ||
		!slices.Equal(first.Stale(), []string{"node1", "node2"}) {
		t.Errorf("first episode %+v (stale %v)", first, first.Stale())
	}
	if first.Start.IsZero() || first.End.IsZero() || first.End.Before(first.Start) {
		t.Errorf("first episode from %s to %s", first.Start, first.End)
	}
	if !second.End.IsZero() || second.Newest != "node1" || !slices.Equal(second.Stale(), []string{"node3"}) {
		t.Errorf("second episode %+v, want it open, node1 newest", second)
	}
	// A copy: the caller cannot change the record.
	got[1].Nodes[0] = "changed"
	if c.SeveralActiveEpisodes()[1].Nodes[0] != "node1" {
		t.Error("SeveralActiveEpisodes shares its slices with the record")
	}
	// Nobody known to have taken over: every node is a stale one.
	if e := (SeveralActive{Nodes: []string{"node1", "node2"}}); !slices.Equal(e.Stale(), []string{"node1", "node2"}) {
		t.Errorf("stale %v", e.Stale())
	}
}
