//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/fakemirakl"
	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/vaulttest"
)

// A three-node Vault cluster on integrated storage serves the engine as one
// Vault does: standbys forward token reads to the active node, whose cache
// answers them all; losing the active node costs one new Mirakl token and no
// reconfiguration; the lost node comes back and serves reads again.
//
// The active node is killed with SIGKILL (with its plugin process), as a
// crash would, rather than stopped: nothing gets a chance to hand over.
func TestCluster(t *testing.T) {
	t.Parallel()
	bins := vaulttest.RequireEnv(t)
	dir := t.TempDir()
	audit := filepath.Join(dir, "audit.log")
	acme := &account{
		name:         "acme",
		clientID:     "e2e-client-acme",
		clientSecret: secretMarker + "-acme-" + randomHex(),
	}
	acme.fake = fakemirakl.New(acme.clientID, acme.clientSecret, fakemirakl.WithTokenPrefix(tokenMarker+"-acme-"))
	t.Cleanup(acme.fake.Close)

	// Registered before the cluster starts, so they run after every node
	// was stopped and its log flushed.
	var c *vaulttest.Cluster
	t.Cleanup(func() { clusterStopped(t, c) })
	t.Cleanup(func() { clusterNoLeak(t, c, audit, acme) })

	started := time.Now()
	c = vaulttest.StartCluster(t, bins, 3)
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
			if !strings.Contains(peers, s.Opts.NodeID) {
				t.Errorf("%s is not a raft peer", s.Opts.NodeID)
			}
		}
		cli := leader.CLI()
		cli.MustRun(t, "audit", "enable", "file", "file_path="+audit)
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
		// would cost a token of its own: say so rather than only count.
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
	if !t.Run("active node killed", func(t *testing.T) {
		before := acme.fake.Requests()
		killed := time.Now()
		c.KillNode(t, oldLeader)
		leader = c.WaitForLeader(t)
		t.Logf("%s killed (SIGKILL); %s active and followed by every survivor %s later", oldLeader.Opts.Name, leader.Opts.Name, since(killed))

		after := readSameTokenThrough(t, c.Running(), acme, "")
		if n := acme.fake.Requests() - before; n > 1 {
			t.Errorf("the failover cost %d token requests, want at most 1", n)
		} else {
			t.Logf("the failover cost %d token request(s); token changed: %t", n, after != token)
		}
		token = after

		for _, s := range c.Running() {
			cli := s.CLI()
			var cfg leasedToken
			cli.MustRunJSON(t, &cfg, "read", "-format=json", "mirakl/config")
			if cfg.Data["client_id"] != acme.clientID || cfg.Data["token_url"] != acme.fake.TokenURL() {
				t.Errorf("config through %s after the failover: %v", s.Opts.Name, cfg.Data)
			}
			if _, ok := cfg.Data["client_secret"]; ok {
				t.Errorf("config read through %s returns client_secret: %v", s.Opts.Name, cfg.Data)
			}
			// The lease handed out by the dead node is still known.
			cli.MustRun(t, "lease", "lookup", lease)
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

		want := token // what the active node's cache holds, unless the lead moved
		if now != leader {
			want = ""
		}
		readSameTokenThrough(t, c.Nodes, acme, want)
		n := acme.fake.Requests() - before
		switch {
		case now == leader && n != 0:
			t.Errorf("the rejoin cost %d token requests with %s still active, want none", n, leader.Opts.Name)
		case now != leader:
			// Raft moved the lead while the node came back: a new active node
			// starts with an empty cache, as in a failover.
			t.Logf("the lead moved from %s to %s during the rejoin; %d token request(s)", leader.Opts.Name, now.Opts.Name, n)
			if n > 1 {
				t.Errorf("a change of active node cost %d token requests, want at most 1", n)
			}
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
// standbys mount no engine, so they cannot hold a token cache of their own.
func onlyActiveRunsPlugin(t *testing.T, c *vaulttest.Cluster, active *vaulttest.Server) {
	t.Helper()
	for _, s := range c.Running() {
		pids := s.PluginPIDs(t)
		switch {
		case s == active && len(pids) != 1:
			t.Errorf("active %s runs %d plugin processes, want 1", s.Opts.Name, len(pids))
		case s != active && len(pids) != 0:
			t.Errorf("standby %s runs plugin processes %v, want none", s.Opts.Name, pids)
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

// clusterStopped checks, once the harness has stopped everything, that no
// node and no plugin process out of the cluster's plugin directory is left.
func clusterStopped(t *testing.T, c *vaulttest.Cluster) {
	if c == nil {
		return
	}
	for _, s := range c.Nodes {
		if p := s.Process(); p != nil && !p.Exited() {
			t.Errorf("%s (pid %d) still runs after the test", s.Opts.Name, p.PID())
		}
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Errorf("listing processes: %v", err)
		return
	}
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		argv0, _, _ := strings.Cut(string(cmdline), "\x00")
		if strings.HasPrefix(argv0, c.PluginDir+string(filepath.Separator)) {
			t.Errorf("plugin process %s (%s) still runs after the test", e.Name(), argv0)
		}
	}
}

// clusterNoLeak looks for the client secret and every issued token in the
// audit log, every node's log and every CLI output but the token reads.
func clusterNoLeak(t *testing.T, c *vaulttest.Cluster, audit string, a *account) {
	if c == nil {
		return
	}
	needles := append([]string{secretMarker, tokenMarker, a.clientSecret}, a.fake.IssuedTokens()...)
	type haystack struct{ where, text string }
	var stacks []haystack
	paths := []string{audit}
	for _, s := range c.Nodes {
		paths = append(paths, s.LogPath)
	}
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			if !t.Failed() { // a test that stopped early may not have enabled the audit device
				t.Errorf("leak check: %v", err)
			}
			continue
		}
		stacks = append(stacks, haystack{path, string(data)})
	}
	for _, s := range c.Nodes {
		for _, r := range s.Transcript() {
			if isTokenRead(r.Args) && r.ExitCode == 0 {
				continue
			}
			stacks = append(stacks, haystack{"the output of vault " + strings.Join(r.Args, " ") + " on " + s.Opts.Name, r.Output()})
		}
	}
	for _, s := range stacks {
		for _, n := range needles {
			if i := strings.Index(s.text, n); i >= 0 {
				t.Errorf("leak: %s contains %q: ...%s...", s.where, n, excerpt(s.text, i))
			}
		}
	}
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
