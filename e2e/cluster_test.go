//go:build e2e

package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/fakemirakl"
	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/vaulttest"
)

// A three-node Vault cluster on integrated storage serves the engine as one
// Vault does: standbys forward token reads to the active node, whose cache
// answers them all; losing the active node costs no reconfiguration and no
// request to Mirakl (which refuses every request after the first token): the
// new active node serves the token the lost one stored; the lost node comes
// back and serves reads again.
//
// The active node is killed with SIGKILL (with its plugin process), as a
// crash would, rather than stopped: nothing gets a chance to hand over.
func TestCluster(t *testing.T) { forEachServer(t, testCluster) }

func testCluster(t *testing.T, server vaulttest.Kind) {
	started := time.Now()
	e := newClusterEnvFor(t, server, 3)
	c := e.cluster
	acme := e.newAccount("acme")
	leader := c.Leader(t)
	t.Logf("3 nodes initialised, joined, unsealed and voting in %s; %s is active", since(started), leader.Opts.Name)

	if !t.Run("plugin registered once, on every node", func(t *testing.T) {
		for _, s := range c.Nodes {
			if s.Plugin() != leader.Plugin() {
				t.Fatalf("%s has plugin %+v, %s has %+v", s.Opts.Name, s.Plugin(), leader.Opts.Name, leader.Plugin())
			}
		}
		peers := leader.CLI().MustRun(t, "operator", "raft", "list-peers")
		t.Logf("vault operator raft list-peers:\n%s", peers)
		for _, s := range c.Nodes {
			if !strings.Contains(peers, s.Opts.Name) {
				t.Errorf("%s is not a raft peer", s.Opts.Name)
			}
		}
		leader.RegisterPlugin(t)
		leader.EnablePlugin(t, "mirakl")
		// The catalog and the mount table are replicated: every node sees them.
		for _, s := range c.Nodes {
			if out := s.CLI().MustRun(t, "secrets", "list"); !strings.Contains(out, "mirakl/") {
				t.Errorf("vault secrets list through %s: no mirakl/:\n%s", s.Opts.Name, out)
			}
		}
	}) {
		return
	}

	var token string // the token the active node's cache holds
	if !t.Run("configured once, read through every node", func(t *testing.T) {
		// A change of active node during this step (raft under heavy load)
		// is not what it tests: say so rather than only count.
		activeFrom := activeSince(t, leader)
		defer func() {
			if c.Leader(t) != leader || !activeSince(t, leader).Equal(activeFrom) {
				t.Errorf("%s did not stay active throughout the step, which the counts assume", leader.Opts.Name)
			}
		}()
		// The write verifies the credentials with one token request and
		// seeds the active node's cache with that token.
		leader.CLI().MustRun(t, "write", "mirakl/config",
			"client_id="+acme.clientID,
			"client_secret="+acme.clientSecret,
			"token_url="+acme.fake.TokenURL())
		requireRequests(t, acme, 1, "after the config write")

		token = readSameTokenThrough(t, c.Nodes, acme, "")
		requireRequests(t, acme, 1, "after a read through each of the 3 nodes")
		onlyActiveRunsPlugin(t, c, leader)
	}) {
		return
	}

	oldLeader := leader
	lease := readToken(t, oldLeader.CLI(), "mirakl").LeaseID
	// Mirakl is down from now on: any request would fail the reads below.
	acme.fake.FailRandomly(1, fakemirakl.HTMLError(http.StatusServiceUnavailable))
	if !t.Run("active node killed", func(t *testing.T) {
		before := acme.fake.Requests()
		killed := time.Now()
		oldLeader.Kill(t)
		leader = c.WaitForLeader(t)
		t.Logf("%s killed (SIGKILL); %s active and followed by every survivor %s later", oldLeader.Opts.Name, leader.Opts.Name, since(killed))

		readSameTokenThrough(t, c.Running(), acme, token)
		if n := acme.fake.Requests() - before; n != 0 {
			t.Errorf("the failover cost %d token requests, want none", n)
		}

		for _, s := range c.Running() {
			checkConfig(t, s.CLI(), "mirakl", acme, "through "+s.Opts.Name+" after the failover")
			// The lease handed out by the dead node is still known.
			s.CLI().MustRun(t, "lease", "lookup", lease)
		}
		onlyActiveRunsPlugin(t, c, leader)
	}) {
		return
	}

	t.Run("killed node back", func(t *testing.T) {
		before := acme.fake.Requests()
		restarted := time.Now()
		c.RestartNode(t, oldLeader)
		c.WaitForVoters(t, 3)
		now := c.Leader(t)
		t.Logf("%s restarted on its data directory, unsealed, following %s and voting again %s later",
			oldLeader.Opts.Name, now.Opts.Name, since(restarted))

		if now != leader {
			// Raft moved the lead while the node came back: the new active
			// node serves the stored token, as in a failover.
			t.Logf("the lead moved from %s to %s during the rejoin", leader.Opts.Name, now.Opts.Name)
		}
		readSameTokenThrough(t, c.Nodes, acme, token)
		if n := acme.fake.Requests() - before; n != 0 {
			t.Errorf("the rejoin cost %d token requests, want none", n)
		}
		onlyActiveRunsPlugin(t, c, now)
	})
	t.Logf("fake Mirakl: %+v; test body took %s", acme.fake.Stats(), since(started))
}

// requireRequests fails the test unless the fake has seen want token requests.
func requireRequests(t *testing.T, a *account, want int, when string) {
	t.Helper()
	if got := a.fake.Requests(); got != want {
		t.Fatalf("%s: the fake saw %d token requests, want %d", when, got, want)
	}
}

// onlyActiveRunsPlugin checks that the plugin runs on the active node only:
// Vault's standbys mount no engine, so they cannot hold a token cache of
// their own. OpenBao's standbys serve reads, so they mount the engine and run
// one plugin process each (vaulttest.Kind.StandbysRunPlugins); every path of
// the engine forwards to the active node, which the request counts of the
// test check.
func onlyActiveRunsPlugin(t *testing.T, c *vaulttest.Cluster, active *vaulttest.Server) {
	t.Helper()
	standbyWants := 0
	if active.Kind().StandbysRunPlugins() {
		standbyWants = 1
	}
	for _, s := range c.Running() {
		pids := s.PluginPIDs(t)
		switch {
		case s == active && len(pids) != 1:
			t.Errorf("active %s runs %d plugin processes, want 1", s.Opts.Name, len(pids))
		case s != active && len(pids) != standbyWants:
			t.Errorf("standby %s runs plugin processes %v, want %d (%s)", s.Opts.Name, pids, standbyWants, active.Kind())
		}
	}
}

// activeSince is when s last became the active node.
func activeSince(t *testing.T, s *vaulttest.Server) time.Time {
	t.Helper()
	l, err := s.Client(t).Sys().Leader()
	if err != nil {
		t.Fatalf("vault read sys/leader on %s: %v", s.Opts.Name, err)
	}
	return l.ActiveTime
}

func since(t time.Time) time.Duration { return time.Since(t).Round(100 * time.Millisecond) }

// readSameTokenThrough reads mirakl/token through each node and fails the test
// unless every read returns the same token, issued by a's fake (and equal to
// want, when want is set). It returns that token.
func readSameTokenThrough(t *testing.T, nodes []*vaulttest.Server, a *account, want string) string {
	t.Helper()
	for _, s := range nodes {
		got := readToken(t, s.CLI(), "mirakl").accessToken()
		issuedBy(t, a, got)
		if want == "" {
			want = got
		}
		if got != want {
			t.Errorf("read through %s: token %q, want %q (what the active node's cache holds)", s.Opts.Name, got, want)
		}
	}
	return want
}
