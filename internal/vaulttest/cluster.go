package vaulttest

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
)

// Cluster is n Vault (or OpenBao) servers on integrated storage (raft)
// forming one highly available cluster on loopback, as an operator would run
// it:
//
//	node1: vault operator init, then unseal          (the first active node)
//	nodeN: retry_join the others, then unseal        (standbys)
//
// Every node has its own API and cluster ports and its own data directory.
// They share one plugin directory, so every node runs the same plugin binary
// (same sha256, same version): the catalog entry is replicated through raft,
// and whichever node becomes active must find the binary it names.
//
// In Vault (community edition) only the active node mounts the secrets
// engines; standbys forward every request to it over the cluster port.
type Cluster struct {
	// Nodes are the servers, node1 first; stopped ones stay in the list.
	Nodes []*Server
	// PluginDir is the plugin directory the nodes share.
	PluginDir string
}

// ClusterOptions is how to run a cluster; the zero value is nodes with their
// default options and no audit device.
type ClusterOptions struct {
	// AuditLog is the file of every node's file audit device (Options.AuditLog).
	// The nodes share it: only the active node writes audit entries.
	AuditLog string
}

// StartCluster starts an n-node raft cluster of env.Kind and returns once it
// is initialised, every node is unsealed, every node is a raft voter (so that
// it survives losing one node when n >= 3) and node1 is active. The root
// token and unseal key are node1's, given to every node.
func StartCluster(t testing.TB, env Env, n int, copts ClusterOptions) *Cluster {
	t.Helper()
	if n < 1 {
		t.Fatalf("vaulttest: a cluster of %d nodes", n)
	}
	dir := t.TempDir()
	c := &Cluster{PluginDir: filepath.Join(dir, "plugins")}
	installPlugin(t, env, c.PluginDir)

	ports := freePorts(t, 2*n)
	addrs := make([]string, n)
	for i := range n {
		addrs[i] = fmt.Sprintf("http://127.0.0.1:%d", ports[2*i])
	}
	for i := range n {
		name := fmt.Sprintf("node%d", i+1)
		// Every node declares the audit device, as OpenBao wants (a node
		// that becomes active removes devices its config does not declare);
		// Vault's, enabled once through node1, is replicated.
		o := Options{Storage: storageRaft, Name: name, Dir: filepath.Join(dir, name), AuditLog: copts.AuditLog,
			port: ports[2*i], clusterPort: ports[2*i+1], pluginDir: c.PluginDir}
		if i > 0 {
			// Every other node, as in a production config: whichever is
			// active answers the join. Only used before the node has joined.
			o.retryJoin = slices.Delete(slices.Clone(addrs), i, i+1)
		}
		c.Nodes = append(c.Nodes, Start(t, env, o))
	}

	first := c.Nodes[0]
	first.Init(t)
	for _, s := range c.Nodes[1:] {
		s.setCredentials(first.RootToken(), first.unsealKeys())
		// unseal retries until retry_join has fetched the seal configuration
		// from node1, then completes the join.
		s.unseal(t)
	}
	c.WaitForVoters(t, n)
	if leader := c.WaitForLeader(t); leader != first {
		t.Logf("vaulttest: %s became active rather than %s", leader.Opts.Name, first.Opts.Name)
	}
	return c
}

// Running are the nodes whose process is running (sealed or not).
func (c *Cluster) Running() []*Server {
	var running []*Server
	for _, s := range c.Nodes {
		if p := s.Process(); p != nil && !p.Exited() {
			running = append(running, s)
		}
	}
	return running
}

// Leader is the active node now; it fails the test unless exactly one running
// node reports itself active. Use WaitForLeader after a change.
func (c *Cluster) Leader(t testing.TB) *Server {
	t.Helper()
	leader, err := c.leader()
	if err != nil {
		t.Fatalf("vaulttest: %v", err)
	}
	return leader
}

// WaitForLeader waits until exactly one running node is active and every
// other running node is an unsealed standby that names it as the leader and
// holds a healthy connection to it (the one its requests are forwarded over),
// and returns the active node.
func (c *Cluster) WaitForLeader(t testing.TB) *Server {
	t.Helper()
	var leader *Server
	c.poll(t, "a leader that every running node follows", func() (err error) {
		leader, err = c.leader()
		if err != nil {
			return err
		}
		for _, s := range c.Running() {
			if s == leader {
				continue
			}
			if err := follows(s, leader); err != nil {
				return err
			}
		}
		return nil
	})
	return leader
}

// WaitForVoters waits until the active node's autopilot counts n healthy
// voters. Autopilot adds a joining node as a non-voter and promotes it once
// it has been healthy for a while (server_stabilization_time, 10s by default);
// until then the cluster cannot lose a node.
func (c *Cluster) WaitForVoters(t testing.TB, n int) {
	t.Helper()
	c.poll(t, fmt.Sprintf("%d healthy raft voters", n), func() error {
		leader, err := c.leader()
		if err != nil {
			return err
		}
		state, err := leader.apiClient(leader.RootToken()).Sys().RaftAutopilotState()
		if err != nil {
			return fmt.Errorf("autopilot state from %s: %w", leader.Opts.Name, err)
		}
		if state == nil {
			return fmt.Errorf("no autopilot state from %s yet", leader.Opts.Name)
		}
		healthy := 0
		for _, id := range state.Voters {
			if srv := state.Servers[id]; srv != nil && srv.Healthy {
				healthy++
			}
		}
		if healthy != n {
			return fmt.Errorf("%d healthy voters of %v (non-voters %v)", healthy, state.Voters, state.NonVoters)
		}
		return nil
	})
}

// RestartNode starts a stopped or killed node again with the same ports and
// data directory, unseals it, and waits until it follows the active node
// again (or is active itself).
func (c *Cluster) RestartNode(t testing.TB, s *Server) {
	t.Helper()
	s.startAgain(t)
	c.WaitForLeader(t)
}

// leader returns the only running node that is unsealed and active.
func (c *Cluster) leader() (*Server, error) {
	var active []string
	var leader *Server
	var problems []string
	for _, s := range c.Running() {
		h, err := s.apiClient("").Sys().Health()
		switch {
		case err != nil:
			problems = append(problems, fmt.Sprintf("%s: %v", s.Opts.Name, err))
		case h.Sealed:
			problems = append(problems, s.Opts.Name+": sealed")
		case !h.Standby:
			active = append(active, s.Opts.Name)
			leader = s
		}
	}
	switch len(active) {
	case 1:
		return leader, nil
	case 0:
		return nil, fmt.Errorf("no active node among %d running (%s)", len(c.Running()), strings.Join(problems, "; "))
	default:
		return nil, fmt.Errorf("several nodes report themselves active: %v", active)
	}
}

// follows checks that s is an unsealed standby whose leader is leader and
// whose connection to it is healthy.
func follows(s, leader *Server) error {
	client := s.apiClient("")
	h, err := client.Sys().Health()
	switch {
	case err != nil:
		return fmt.Errorf("%s: %w", s.Opts.Name, err)
	case h.Sealed:
		return fmt.Errorf("%s is sealed", s.Opts.Name)
	case !h.Standby:
		return fmt.Errorf("%s is not a standby", s.Opts.Name)
	case h.HAConnectionHealthy != nil && !*h.HAConnectionHealthy:
		return fmt.Errorf("%s has no healthy connection to the active node yet", s.Opts.Name)
	}
	l, err := client.Sys().Leader()
	if err != nil {
		return fmt.Errorf("%s: %w", s.Opts.Name, err)
	}
	if l.LeaderAddress != leader.Addr {
		return fmt.Errorf("%s follows %q, not %s at %s", s.Opts.Name, l.LeaderAddress, leader.Opts.Name, leader.Addr)
	}
	return nil
}

// apiClient is Client without a testing.TB, for polling loops; every request
// is bounded so that a hung node cannot stall the poll.
func (s *Server) apiClient(token string) *api.Client {
	client, err := newAPIClient(s.Addr, token, 5*time.Second)
	if err != nil {
		panic(fmt.Sprintf("vaulttest: api client for %s: %v", s.Addr, err)) // only a malformed address fails
	}
	return client
}

// poll retries check every 200ms until it succeeds or readyTimeout passes.
func (c *Cluster) poll(t testing.TB, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(readyTimeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("vaulttest: the cluster did not reach %s in %s: %v", what, readyTimeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
