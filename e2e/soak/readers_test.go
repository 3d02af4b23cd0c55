//go:build soak

package soak

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/vaulttest"
)

// read is one reader's read of <mount>/token (or <mount>/token/<role>)
// through one node.
type read struct {
	node, mount int
	role        string // "" for the default token
	start, end  time.Time
	// What a successful read returned.
	token     string
	lease     int // lease_duration, seconds
	expiresIn int // the expires_in field, seconds
	renewable bool
	warnings  int
	// What a failed one did: the HTTP status (0: no answer) and the class
	// of its error (classify).
	status int
	class  errorClass
	err    string
}

func (r *read) failed() bool { return r.class != "" }

// readers read each mount through each node, steadily, over the HTTP API.
type readers struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	reads  []read
}

func startReaders(s *soak) *readers {
	ctx, cancel := context.WithCancel(context.Background())
	r := &readers{cancel: cancel}
	for n, node := range s.cluster.Nodes {
		for m, mnt := range s.mounts {
			client := node.Client(s.t)
			// No read is allowed to wait this long; one that does fails
			// with a timeout, which counts against invariant 3.
			client.SetClientTimeout(2*requestTimeout + 10*time.Second)
			r.wg.Go(func() { r.read(ctx, client, n, m, mnt) })
		}
	}
	return r
}

// read reads the default token and each role's in turn (each node's reader
// starts at another, so that every token is read through every node).
func (r *readers) read(ctx context.Context, client *api.Client, node, mount int, mnt *mount) {
	next := time.Now()
	targets := append([]string{""}, roleNames...)
	for k := node; ctx.Err() == nil; k++ {
		role := targets[k%len(targets)]
		rd := read{node: node, mount: mount, role: role, start: time.Now()}
		secret, err := client.Logical().ReadWithContext(ctx, mnt.tokenPath(role))
		rd.end = time.Now()
		if ctx.Err() != nil {
			return // the soak ended during this read: it proves nothing
		}
		switch {
		case err != nil:
			rd.status, rd.class, rd.err = classify(err)
		case secret == nil || secret.Data == nil:
			// The API client answers a 404 without data so: Vault routed
			// the read to no engine (the engine answers data or an error).
			rd.status, rd.class, rd.err = 404, classPlugin, "HTTP 404 without data: Vault routed the read to no mount"
		default:
			rd.token, _ = secret.Data["access_token"].(string)
			rd.expiresIn = intField(secret.Data["expires_in"])
			rd.lease, rd.renewable, rd.warnings = secret.LeaseDuration, secret.Renewable, len(secret.Warnings)
		}
		r.mu.Lock()
		r.reads = append(r.reads, rd)
		r.mu.Unlock()
		// Paced from the planned start of each read: a slow read does not
		// make the next one late, nor bunch the following ones.
		next = next.Add(readInterval)
		if d := time.Until(next); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
			}
		} else {
			next = time.Now()
		}
	}
}

func intField(v any) int {
	switch n := v.(type) {
	case float64:
		return int(n)
	case string:
		i, _ := strconv.Atoi(n)
		return i
	default:
		// The API client decodes numbers as json.Number.
		i, _ := strconv.Atoi(fmt.Sprint(n))
		return i
	}
}

func (r *readers) stop() {
	r.cancel()
	r.wg.Wait()
}

func (r *readers) all() []read {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]read(nil), r.reads...)
}

// errorClass is why a read failed, as far as its answer tells.
type errorClass string

const (
	// classEngine: the engine answered with an error of its own (its 502
	// with the failure, or an error it wrapped): what invariant 3 judges.
	classEngine errorClass = "engine"
	// classNodeDown: no answer at all: the node read through was killed or
	// is restarting.
	classNodeDown errorClass = "node down"
	// classSealed: the node is up but sealed (after a restart).
	classSealed errorClass = "vault sealed"
	// classElection: Vault's own errors while the active node changes.
	classElection errorClass = "vault election"
	// classPlugin: Vault's errors while a plugin process is killed or
	// reloaded under it.
	classPlugin errorClass = "vault plugin restart"
	// classTimeout: the read took longer than the reader's client allows.
	classTimeout errorClass = "reader timeout"
	// classNoRole: the engine's 400 for a role that does not exist: expected
	// while a role is deleted and not yet re-created (invariant 3 counts
	// those apart), an error at any other time.
	classNoRole errorClass = "no such role"
	// classOther: anything else; judged as the engine's by invariant 3,
	// since nothing shows it is Vault's.
	classOther errorClass = "other"
)

// Vault's own messages, by class: what a node answers while it has no
// active node to forward to, or while the plugin under a mount restarts.
var (
	electionTexts = []string{"local node not active", "active cluster node not found", "node not active",
		"no leader", "leadership", "standby", "stepped down", "request forwarding", "forwarding", "cannot forward",
		"error during forwarding", "context canceled", "in the process of being sealed", "vault is shutting down",
		"cluster is not ready", "Vault is not initialized"}
	pluginTexts = []string{"plugin", "rpc error", "transport is closing", "connection is shut down",
		"backend is nil", "no handler for route", "unsupported path", "EOF"}
)

// classify names the class of a read's error. The engine's errors come
// first: they name Mirakl, a token or the configuration, and the engine
// answers them 502 (or 500 wrapped as "getting a token").
func classify(err error) (status int, class errorClass, text string) {
	text = trim(err.Error(), 400)
	var resp *api.ResponseError
	if !errors.As(err, &resp) {
		switch {
		case errors.Is(err, context.DeadlineExceeded) || strings.Contains(text, "Client.Timeout"):
			return 0, classTimeout, text
		default:
			return 0, classNodeDown, text
		}
	}
	status = resp.StatusCode
	msg := strings.Join(resp.Errors, "; ")
	text = trim(msg, 400)
	switch {
	case status == http.StatusBadRequest && strings.Contains(msg, "there is no role"):
		return status, classNoRole, text
	case status == http.StatusBadGateway || strings.Contains(msg, "Mirakl") || strings.Contains(msg, "getting a token") ||
		strings.Contains(msg, "configuration changed") || strings.Contains(msg, "not configured") || strings.Contains(msg, "gave up waiting"):
		return status, classEngine, text
	case strings.Contains(msg, "Vault is sealed") || strings.Contains(msg, "sealed"):
		return status, classSealed, text
	case containsAny(msg, electionTexts):
		return status, classElection, text
	case containsAny(msg, pluginTexts):
		return status, classPlugin, text
	}
	return status, classOther, text
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// procSample is one look at one plugin process.
type procSample struct {
	at      time.Time
	node    string
	pid     int
	rss     int64 // bytes
	threads int
	fds     int
	// goroutines, from the mount's metrics (mirakl_plugin_goroutines), for
	// the active node's plugin process only; -1 when not known.
	goroutines int
}

// sampler looks at every plugin process of every running node, and at the
// fakes' open connections, every sampleInterval.
type sampler struct {
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	procs  []procSample
	conns  [][2]int // per sample: the fakes' open connections, per mount
	why    string   // why nothing could be measured, if so
}

func startSampler(s *soak) *sampler {
	ctx, cancel := context.WithCancel(context.Background())
	sm := &sampler{cancel: cancel, done: make(chan struct{})}
	if runtime.GOOS != "linux" {
		// RSS, threads and descriptors come from /proc.
		sm.why = "plugin processes are sampled from /proc, which " + runtime.GOOS + " lacks"
	}
	go func() {
		defer close(sm.done)
		tick := time.NewTicker(sampleInterval)
		defer tick.Stop()
		for {
			sm.sample(s)
			select {
			case <-tick.C:
			case <-ctx.Done():
				sm.sample(s)
				return
			}
		}
	}()
	return sm
}

func (sm *sampler) sample(s *soak) {
	now := time.Now()
	var conns [2]int
	for i, m := range s.mounts[:min(2, len(s.mounts))] {
		conns[i] = m.fake.OpenConnections()
	}
	var got []procSample
	if sm.why == "" {
		for _, n := range s.cluster.Nodes {
			p := n.Process()
			if p == nil || p.Exited() {
				continue
			}
			pids, err := vaulttest.ChildProcesses(p.PID(), n.Plugin().Command)
			if err != nil {
				continue
			}
			for _, pid := range pids {
				if ps, ok := readProc(pid); ok {
					ps.at, ps.node = now, n.Opts.Name
					got = append(got, ps)
				}
			}
		}
	}
	if active, g, ok := activeGoroutines(s); ok {
		// The active node's plugin process serves the reads: the metrics
		// it answers are that process's, when the node runs just one.
		var on []int
		for i, p := range got {
			if p.node == active {
				on = append(on, i)
			}
		}
		if len(on) == 1 {
			got[on[0]].goroutines = g
		}
	}
	sm.mu.Lock()
	defer sm.mu.Unlock()
	sm.procs = append(sm.procs, got...)
	sm.conns = append(sm.conns, conns)
}

// sampleClient asks one node at a time, never following a standby's redirect.
var sampleClient = &http.Client{
	Timeout:       2 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// activeGoroutines is the name of the one node that says it is active, and
// the goroutines of its plugin process as the first mount's metrics show them
// (the process serves every mount). Goroutines are not visible from outside
// the process: the engine counts its own. Not ok while no node, or several,
// say they are active, or the node does not answer.
func activeGoroutines(s *soak) (node string, goroutines int, ok bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	nodes := s.cluster.ActiveNodes(ctx)
	if len(nodes) != 1 {
		return "", 0, false
	}
	active := nodes[0]
	goroutines = -1
	err := get(active, s.mounts[0].path+"/metrics", func(body []byte) error {
		for line := range strings.SplitSeq(string(body), "\n") {
			if rest, found := strings.CutPrefix(line, "mirakl_plugin_goroutines{"); found {
				_, value, _ := strings.Cut(rest, "} ")
				v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
				goroutines = int(v)
				return err
			}
		}
		return errors.New("no mirakl_plugin_goroutines")
	})
	return active.Opts.Name, goroutines, err == nil && goroutines >= 0
}

// get reads path from node n alone (no redirect) and hands a 200's body to use.
func get(n *vaulttest.Server, path string, use func([]byte) error) error {
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, n.Addr+"/v1/"+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("X-Vault-Token", n.RootToken())
	resp, err := sampleClient.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: HTTP %d", path, resp.StatusCode)
	}
	return use(body)
}

// readProc reads a process's resident memory, threads and open descriptors
// from /proc (Linux). A Go program's goroutines are not visible from outside:
// activeGoroutines asks the engine.
func readProc(pid int) (procSample, bool) {
	dir := filepath.Join("/proc", strconv.Itoa(pid))
	status, err := os.ReadFile(filepath.Join(dir, "status"))
	if err != nil {
		return procSample{}, false
	}
	ps := procSample{pid: pid, goroutines: -1}
	for line := range strings.SplitSeq(string(status), "\n") {
		key, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		fields := strings.Fields(value)
		if len(fields) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(fields[0], 10, 64)
		switch key {
		case "VmRSS":
			ps.rss = n * 1024 // kB
		case "Threads":
			ps.threads = int(n)
		}
	}
	fds, err := os.ReadDir(filepath.Join(dir, "fd"))
	if err != nil {
		return procSample{}, false
	}
	ps.fds = len(fds)
	return ps, true
}

func (sm *sampler) stop() {
	sm.cancel()
	<-sm.done
}

// leaderWatch looks every half second whether some node is active, so that
// an election the schedule did not cause (a leader lost under load) is in
// the fault log too, as "no-leader": invariant 3 then counts its errors as
// Vault's.
type leaderWatch struct {
	cancel context.CancelFunc
	done   chan struct{}
}

const noLeader faultKind = "no-leader"

func startLeaderWatch(s *soak) *leaderWatch {
	ctx, cancel := context.WithCancel(context.Background())
	w := &leaderWatch{cancel: cancel, done: make(chan struct{})}
	// Through the cluster's own look, so that a time with several active
	// nodes is recorded too (the report lists those).
	active := func() bool {
		lookCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		return len(s.cluster.ActiveNodes(lookCtx)) > 0
	}
	go func() {
		defer close(w.done)
		var gap *fault
		for ctx.Err() == nil {
			switch ok := active(); {
			case !ok && gap == nil && ctx.Err() == nil:
				gap = &fault{kind: noLeader, target: "cluster", start: time.Now(), noLeader: true, detail: "no node active (seen by the watch)"}
				s.log.add(gap)
			case ok && gap != nil:
				s.log.finish(gap, "")
				gap = nil
			}
			select {
			case <-time.After(500 * time.Millisecond):
			case <-ctx.Done():
			}
		}
		if gap != nil {
			s.log.finish(gap, "")
		}
	}()
	return w
}

func (w *leaderWatch) stop() {
	w.cancel()
	<-w.done
}
