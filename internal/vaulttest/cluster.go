package vaulttest

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
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

	mu       sync.Mutex
	episodes []SeveralActive // every look's record, oldest first
}

// ClusterOptions is how to run a cluster; the zero value is nodes with their
// default options and no audit device.
type ClusterOptions struct {
	// AuditLog is the file of every node's file audit device (Options.AuditLog).
	// The nodes share it: only the active node writes audit entries.
	AuditLog string
}

// ErrSeveralActive is wrapped by the errors of the waits below when, at
// their end, more than one running node still reported itself active.
//
// That happens in a healthy raft cluster, for a while: a node that has lost
// the lead (a step-down, or an election it did not notice under load) goes on
// reporting itself active on sys/health (or stops answering) until it has
// drained its in-flight requests and torn down its mounts. Vault gives those
// requests up to 90s (DefaultMaxRequestDuration) before it cancels them, and
// waits for its state lock meanwhile, so its sys/leader does not answer; a
// loaded machine adds to that. The waits tolerate it for staleActiveTimeout,
// and the cluster records each time (SeveralActiveEpisodes).
var ErrSeveralActive = errors.New("several nodes report themselves active")

// staleActiveTimeout is how long a wait keeps waiting, from the first look
// that saw several active nodes, for all but one of them to step down: past
// Vault's 90s drain, with room for a loaded machine.
const staleActiveTimeout = 2 * time.Minute

// SeveralActive is one time in which more than one running node reported
// itself active, as the cluster's looks saw it (every wait and Leader looks,
// and so does ActiveNodes for a watcher that polls).
type SeveralActive struct {
	// Start is the first look that saw several active nodes; End the first
	// look after it that saw at most one, with an answer from each of Nodes
	// that is still running (zero while it lasts).
	Start, End time.Time
	// Nodes are the nodes that reported themselves active during it.
	Nodes []string
	// Newest is the one that became active last (sys/leader's active_time)
	// and answered as the leader: the one the cluster took for the active
	// node. The others had lost the lead without noticing yet. "" when no
	// look could tell.
	Newest string
}

// Stale are the nodes of the episode other than Newest (all of them when
// Newest is unknown).
func (e SeveralActive) Stale() []string {
	return slices.DeleteFunc(slices.Clone(e.Nodes), func(n string) bool { return n == e.Newest })
}

// SeveralActiveEpisodes are the times in which several nodes reported
// themselves active, oldest first; the last one's End is zero if it lasts.
func (c *Cluster) SeveralActiveEpisodes() []SeveralActive {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]SeveralActive, len(c.episodes))
	for i, e := range c.episodes {
		out[i] = e
		out[i].Nodes = slices.Clone(e.Nodes)
	}
	return out
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

// Leader is the active node now; it fails the test unless some running node
// reports itself active. When several do, it is the one that became active
// last and answers as the leader (the others have not noticed yet that they
// lost the lead), and the test log says so. Use WaitForLeader after a change.
func (c *Cluster) Leader(t testing.TB) *Server {
	t.Helper()
	leader, stale, err := c.leader()
	if err != nil {
		t.Fatalf("vaulttest: %v", err)
	}
	if len(stale) > 0 {
		t.Logf("vaulttest: several nodes report themselves active: %s became active last and is taken for the leader (still active: %s)",
			leader.Opts.Name, strings.Join(names(stale), ", "))
	}
	return leader
}

// WaitForLeader waits until exactly one running node is active and every
// other running node is an unsealed standby that names it as the leader and
// holds a healthy connection to it (the one its requests are forwarded over),
// and returns the active node. It fails the test when that takes longer than
// a node takes to become ready, or, while several nodes report themselves
// active, longer than staleActiveTimeout from the first look that saw them.
func (c *Cluster) WaitForLeader(t testing.TB) *Server {
	t.Helper()
	leader, err := c.TryWaitForLeader(t)
	if err != nil {
		t.Fatalf("vaulttest: %v", err)
	}
	return leader
}

// TryWaitForLeader is WaitForLeader returning its failure rather than failing
// the test: a harness that can go on without a leader for now (and skip what
// needs one) tells ErrSeveralActive apart with errors.Is.
func (c *Cluster) TryWaitForLeader(t testing.TB) (*Server, error) {
	t.Helper()
	var leader *Server
	err := c.poll(t, "a leader that every running node follows", func() error {
		l, stale, err := c.leader()
		if err != nil {
			return err
		}
		if len(stale) > 0 {
			return fmt.Errorf("%w: %s and %s; %s became active last", ErrSeveralActive,
				strings.Join(names(stale), ", "), l.Opts.Name, l.Opts.Name)
		}
		for _, s := range c.Running() {
			if s == l {
				continue
			}
			if err := follows(s, l); err != nil {
				if slices.Contains(c.staleNow(), s.Opts.Name) {
					// It said it was active after l took over, and has
					// not said otherwise since: still draining.
					return fmt.Errorf("%w: %s, since %s took over: %w", ErrSeveralActive, s.Opts.Name, l.Opts.Name, err)
				}
				return err
			}
		}
		leader = l
		return nil
	})
	return leader, err
}

// WaitForVoters waits until the active node's autopilot counts n healthy
// voters. Autopilot adds a joining node as a non-voter and promotes it once
// it has been healthy for a while (server_stabilization_time, 10s by default);
// until then the cluster cannot lose a node.
func (c *Cluster) WaitForVoters(t testing.TB, n int) {
	t.Helper()
	if err := c.TryWaitForVoters(t, n); err != nil {
		t.Fatalf("vaulttest: %v", err)
	}
}

// TryWaitForVoters is WaitForVoters returning its failure rather than failing
// the test.
func (c *Cluster) TryWaitForVoters(t testing.TB, n int) error {
	t.Helper()
	return c.poll(t, fmt.Sprintf("%d healthy raft voters", n), func() error {
		// The node that became active last, if others still say they are:
		// theirs is an autopilot of the past.
		leader, _, err := c.leader()
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
	if err := c.TryRestartNode(t, s); err != nil {
		t.Fatalf("vaulttest: %v", err)
	}
}

// TryRestartNode is RestartNode returning the failure of its wait for the
// leader rather than failing the test (starting and unsealing still fail it).
func (c *Cluster) TryRestartNode(t testing.TB, s *Server) error {
	t.Helper()
	s.startAgain(t)
	_, err := c.TryWaitForLeader(t)
	return err
}

// ActiveNodes looks once at every running node and returns those that report
// themselves active (unsealed, not a standby), for a watcher that polls on its
// own; ctx bounds the look. Like every look of the cluster, one that sees
// several active nodes is recorded (SeveralActiveEpisodes).
func (c *Cluster) ActiveNodes(ctx context.Context) []*Server {
	var active, silent []*Server
	for _, n := range c.look(ctx) {
		switch {
		case n.err != nil:
			silent = append(silent, n.s)
		case !n.health.Sealed && !n.health.Standby:
			active = append(active, n.s)
		}
	}
	if ctx.Err() != nil {
		return active // a look cut short is no record of the cluster
	}
	var newest *Server
	switch len(active) {
	case 0:
	case 1:
		newest = active[0]
	default:
		newest = newestActive(ctx, active)
	}
	c.record(active, silent, newest)
	return active
}

// lookTimeout bounds one look at the cluster (every node's health, and the
// active nodes' sys/leader when there are several).
const lookTimeout = 5 * time.Second

// leader returns the active node: the only running node that is unsealed and
// active or, when several report themselves active, the one that became
// active last and answers as the leader; stale are the others.
func (c *Cluster) leader() (leader *Server, stale []*Server, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), lookTimeout)
	defer cancel()
	var active, silent []*Server
	var problems []string
	for _, n := range c.look(ctx) {
		switch {
		case n.err != nil:
			silent = append(silent, n.s)
			problems = append(problems, fmt.Sprintf("%s: %v", n.s.Opts.Name, n.err))
		case n.health.Sealed:
			problems = append(problems, n.s.Opts.Name+": sealed")
		case !n.health.Standby:
			active = append(active, n.s)
		}
	}
	switch len(active) {
	case 0:
		c.record(nil, silent, nil)
		return nil, nil, fmt.Errorf("no active node among %d running (%s)", len(c.Running()), strings.Join(problems, "; "))
	case 1:
		c.record(active, silent, active[0])
		return active[0], nil, nil
	}
	leaderCtx, cancelLeader := context.WithTimeout(context.Background(), lookTimeout)
	defer cancelLeader()
	leader = newestActive(leaderCtx, active)
	c.record(active, silent, leader)
	if leader == nil {
		return nil, nil, fmt.Errorf("%w: %s, and none of them answers sys/leader as the leader yet", ErrSeveralActive, strings.Join(names(active), ", "))
	}
	for _, s := range active {
		if s != leader {
			stale = append(stale, s)
		}
	}
	return leader, stale, nil
}

// nodeHealth is one node's sys/health in a look.
type nodeHealth struct {
	s      *Server
	health *api.HealthResponse
	err    error
}

// look asks every running node for its health at once, so that a node slow
// to answer does not make the others' answers late.
func (c *Cluster) look(ctx context.Context) []nodeHealth {
	running := c.Running()
	out := make([]nodeHealth, len(running))
	var wg sync.WaitGroup
	for i, s := range running {
		wg.Go(func() {
			h, err := s.apiClient("").Sys().HealthWithContext(ctx)
			out[i] = nodeHealth{s: s, health: h, err: err}
		})
	}
	wg.Wait()
	return out
}

// newestActive is, of several nodes that report themselves active, the one
// whose sys/leader says it is the leader with the latest active_time (the
// nodes share one clock: they run on one machine), or nil if none answers so.
// A node that lost the lead and is draining its requests holds its state
// lock: its sys/leader waits, and ctx ends the wait.
func newestActive(ctx context.Context, active []*Server) *Server {
	times := make([]time.Time, len(active))
	var wg sync.WaitGroup
	for i, s := range active {
		wg.Go(func() {
			l, err := s.apiClient(s.RootToken()).Sys().LeaderWithContext(ctx)
			if err == nil && l.IsSelf && !l.ActiveTime.IsZero() {
				times[i] = l.ActiveTime
			}
		})
	}
	wg.Wait()
	var newest *Server
	var at time.Time
	for i, s := range active {
		if times[i].After(at) {
			newest, at = s, times[i]
		}
	}
	return newest
}

// record adds a look that saw active (and took newest for the leader) to the
// episodes of several active nodes: it opens one, widens it, or ends it. It
// ends it only once every node that had lost the lead answers again (or is
// no longer running): one that is silent (the look got no answer from it)
// may still be draining its requests, and a read through it waits.
func (c *Cluster) record(active, silent []*Server, newest *Server) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	var open *SeveralActive
	if n := len(c.episodes); n > 0 && c.episodes[n-1].End.IsZero() {
		open = &c.episodes[n-1]
	}
	if len(active) < 2 {
		if open != nil && !slices.ContainsFunc(silent, func(s *Server) bool { return slices.Contains(open.Nodes, s.Opts.Name) }) {
			open.End = now
		}
		return
	}
	if open == nil {
		c.episodes = append(c.episodes, SeveralActive{Start: now})
		open = &c.episodes[len(c.episodes)-1]
	}
	for _, name := range names(active) {
		if !slices.Contains(open.Nodes, name) {
			open.Nodes = append(open.Nodes, name)
		}
	}
	if newest != nil {
		open.Newest = newest.Opts.Name
	}
}

// staleNow are the nodes that lost the lead in the episode of several active
// nodes under way, if one is.
func (c *Cluster) staleNow() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := len(c.episodes); n > 0 && c.episodes[n-1].End.IsZero() {
		return c.episodes[n-1].Stale()
	}
	return nil
}

func names(servers []*Server) []string {
	out := make([]string, len(servers))
	for i, s := range servers {
		out[i] = s.Opts.Name
	}
	return out
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

// poll retries check every 200ms until it succeeds or readyTimeout passes;
// while check finds several active nodes, until staleActiveTimeout after the
// first time it did, if that is later. A wait that outlasted several active
// nodes says so in the test log.
func (c *Cluster) poll(t testing.TB, what string, check func() error) error {
	t.Helper()
	start := time.Now()
	deadline := start.Add(readyTimeout)
	var severalSince, severalUntil time.Time
	for {
		err := check()
		several := errors.Is(err, ErrSeveralActive)
		if several {
			if severalSince.IsZero() {
				severalSince = time.Now()
				deadline = later(deadline, severalSince.Add(staleActiveTimeout))
			}
			severalUntil = time.Now()
		}
		if err == nil {
			if !severalSince.IsZero() {
				t.Logf("vaulttest: waited %s for %s, through %s in which several nodes reported themselves active",
					time.Since(start).Round(100*time.Millisecond), what, severalUntil.Sub(severalSince).Round(100*time.Millisecond))
			}
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the cluster did not reach %s in %s: %w", what, time.Since(start).Round(time.Second), err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
