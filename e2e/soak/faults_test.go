//go:build soak

package soak

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/fakemirakl"
	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/vaulttest"
)

// faultKind is one kind of fault the schedule plays.
type faultKind string

// Mirakl misbehaving, each for a window, on one mount's account or both.
const (
	miraklUnavailable faultKind = "mirakl-503"
	miraklRateLimited faultKind = "mirakl-429"     // with a Retry-After
	miraklHang        faultKind = "mirakl-hang"    // past request_timeout
	miraklRefuses     faultKind = "mirakl-refuses" // 401 invalid_client
	miraklGarbage     faultKind = "mirakl-garbage" // 200 with a body that is no token
)

// The cluster and the plugin, one at a time.
const (
	killLeader    faultKind = "kill-leader" // SIGKILL, then restart and unseal
	stepDown      faultKind = "step-down"
	killPlugin    faultKind = "kill-plugin" // SIGKILL of the active node's plugin process
	pluginReload  faultKind = "plugin-reload"
	configRewrite faultKind = "config-rewrite"
)

// Roles (issue 25), played one at a time with the cluster faults, through a
// node the seed picks (a standby forwards the write). They have a schedule of
// their own (planFaults), so that the Mirakl windows and cluster faults of a
// seed stay what they were before roles.
const (
	// roleWrite: the role's audience moved to its other one, or its
	// min_ttl changed; with verify or not. Either drops the role's token.
	roleWrite faultKind = "role-write"
	// roleRecreate: the role deleted, then written again a few seconds
	// later with the same audience: reads of it meanwhile get a 400.
	roleRecreate faultKind = "role-recreate"
)

// roleGone is how long a deleted role stays deleted before it is written
// again: long enough for every node's reader to meet the 400.
const roleGone = 3 * time.Second

// severalActive is no fault the schedule plays: it is a time in which more
// than one node reported itself active (a node that lost the lead and has
// not noticed yet, or is still draining its requests), as the cluster's looks
// saw it; the report adds one to the fault log for each (addSeveralActive).
const severalActive faultKind = "several-active"

var (
	miraklFaults  = []faultKind{miraklUnavailable, miraklRateLimited, miraklHang, miraklRefuses, miraklGarbage}
	clusterFaults = []faultKind{killLeader, stepDown, killPlugin, pluginReload, configRewrite}
	roleFaults    = []faultKind{roleWrite, roleRecreate}
)

// resetsGate: after the fault, the active node's plugin process (or
// backend) is new, and so is its gate: the outage budget starts afresh. A
// time with several active nodes began with a node becoming active: its
// plugin is new too.
func (k faultKind) resetsGate() bool {
	return k == killLeader || k == stepDown || k == killPlugin || k == pluginReload || k == severalActive
}

// rewriteMinTTLs are the min_ttl values a config rewrite picks from: within
// half the token's life, so that reads carry no warning.
var rewriteMinTTLs = []string{"30s", "20s", "40s"}

// plannedFault is one fault of the schedule.
type plannedFault struct {
	at, length time.Duration // from the start; length for a Mirakl window
	kind       faultKind
	mounts     []int // the mounts whose Mirakl misbehaves, or whose config is rewritten
	retryAfter int   // seconds, for miraklRateLimited
	minTTL     string
	// For a role fault: the role, whether its writes verify, and for a
	// roleWrite whether it moves the audience (else minTTL is the role's).
	role       string
	verify     bool
	toAudience bool
}

// planFaults is the schedule of a soak of duration, from rng alone: the same
// seed and duration give the same schedule. Mirakl windows never overlap one
// another; cluster faults run one at a time, across the windows. The start
// and the end are quiet (warm-up, and time for every promise to show).
func planFaults(rng *rand.Rand, duration time.Duration) []plannedFault {
	// A short soak packs its faults closer together.
	scale := min(max(float64(duration)/float64(10*time.Minute), 0.25), 1)
	uniform := func(lo, hi time.Duration) time.Duration {
		lo, hi = time.Duration(float64(lo)*scale), time.Duration(float64(hi)*scale)
		return lo + time.Duration(rng.Int64N(int64(hi-lo)+1))
	}
	warmup, tail := min(20*time.Second, duration/5), min(30*time.Second, duration/5)
	var plan []plannedFault

	for at := warmup; ; {
		at += uniform(10*time.Second, 50*time.Second)
		kind := miraklFaults[rng.IntN(len(miraklFaults))]
		length := max(uniform(5*time.Second, 60*time.Second), 3*time.Second)
		if at+length > duration-tail {
			break
		}
		f := plannedFault{at: at, length: length, kind: kind, mounts: pickMounts(rng)}
		if kind == miraklRateLimited {
			f.retryAfter = 5 + rng.IntN(56)
		}
		plan = append(plan, f)
		at += length
	}
	for at := warmup + uniform(0, 20*time.Second); ; {
		at += uniform(20*time.Second, 60*time.Second)
		if at > duration-tail {
			break
		}
		f := plannedFault{at: at, kind: clusterFaults[rng.IntN(len(clusterFaults))]}
		if f.kind == configRewrite {
			f.mounts = []int{rng.IntN(len(mountNames))}
			f.minTTL = rewriteMinTTLs[rng.IntN(len(rewriteMinTTLs))]
		}
		plan = append(plan, f)
	}
	// Role faults last, so that the draws above, and with them every seed's
	// Mirakl windows and cluster faults, are those of before roles.
	for at := warmup + uniform(5*time.Second, 25*time.Second); ; {
		at += uniform(20*time.Second, 60*time.Second)
		if at > duration-tail {
			break
		}
		f := plannedFault{at: at, kind: roleFaults[rng.IntN(len(roleFaults))], mounts: []int{rng.IntN(len(mountNames))},
			role: roleNames[rng.IntN(len(roleNames))], verify: rng.IntN(2) == 0}
		if f.kind == roleWrite {
			if f.toAudience = rng.IntN(2) == 0; !f.toAudience {
				f.minTTL = rewriteMinTTLs[rng.IntN(len(rewriteMinTTLs))]
			}
		}
		plan = append(plan, f)
	}
	slices.SortStableFunc(plan, func(a, b plannedFault) int { return int(a.at - b.at) })
	return plan
}

// pickMounts is both mounts half of the time, else one of them.
func pickMounts(rng *rand.Rand) []int {
	if rng.IntN(2) == 0 {
		return []int{0, 1}
	}
	return []int{rng.IntN(2)}
}

// fault is one fault as it was played.
type fault struct {
	kind       faultKind
	target     string
	mounts     []int
	start, end time.Time
	retryAfter time.Duration
	// noLeader: the cluster had no active node from start until end (an
	// election), so reads may fail with Vault's own errors.
	noLeader bool
	// stale: for severalActive, the nodes (indexes in the cluster's Nodes)
	// that still reported themselves active after another took over.
	stale  []int
	detail string
	// For a role fault: the role, its audience before and after (as read
	// back from the cluster), and its writes that may have gone to Mirakl
	// (verified writes: a check each; every write also drops the token, and
	// the next read may fetch one).
	role                string
	audBefore, audAfter string
	checks, writes      int
}

// covers reports whether the fault concerns mount m's Mirakl or config.
func (f *fault) covers(m int) bool { return slices.Contains(f.mounts, m) }

func (f *fault) isMirakl() bool { return slices.Contains(miraklFaults, f.kind) }

// faultLog is every fault played, safe for the two goroutines that play them.
type faultLog struct {
	start   time.Time
	mu      sync.Mutex
	list    []*fault
	skipped []skippedFault
}

// skippedFault is a fault of the schedule that was not played: the cluster
// had no one active node to play it on within the harness's bound.
type skippedFault struct {
	kind faultKind
	at   time.Time
	why  string
}

func (l *faultLog) skip(f skippedFault) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.skipped = append(l.skipped, f)
}

func (l *faultLog) allSkipped() []skippedFault {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.skipped)
}

func (l *faultLog) add(f *fault) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.list = append(l.list, f)
}

func (l *faultLog) all() []fault {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]fault, len(l.list))
	for i, f := range l.list {
		out[i] = *f
	}
	slices.SortStableFunc(out, func(a, b fault) int { return a.start.Compare(b.start) })
	return out
}

func (l *faultLog) setNoLeader(f *fault, noLeader bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f.noLeader = noLeader
}

func (l *faultLog) finish(f *fault, detail string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f.end = time.Now()
	if detail != "" {
		f.detail = detail
	}
}

// play runs the schedule: Mirakl windows in a goroutine of their own (they
// only change what the fakes answer), cluster faults here, in the test's
// goroutine, since the harness fails the test from it when a node does not
// come back.
func (s *soak) play(plan []plannedFault) {
	var windows, cluster []plannedFault
	for _, f := range plan {
		if slices.Contains(miraklFaults, f.kind) {
			windows = append(windows, f)
		} else {
			cluster = append(cluster, f)
		}
	}
	done := make(chan struct{})
	stop := make(chan struct{})
	go func() {
		defer close(done)
		for _, f := range windows {
			if !sleepUntil(s.start.Add(f.at), stop) {
				return
			}
			s.miraklWindow(f, stop)
		}
	}()
	defer func() {
		close(stop)
		<-done
	}()
	for _, f := range cluster {
		sleepUntil(s.start.Add(f.at), nil)
		s.clusterFault(f)
	}
	<-done
}

// sleepUntil sleeps until at, or returns false when stop closes first.
func sleepUntil(at time.Time, stop <-chan struct{}) bool {
	d := time.Until(at)
	if d <= 0 {
		return true
	}
	select {
	case <-time.After(d):
		return true
	case <-stop:
		return false
	}
}

// miraklWindow makes the mounts' fakes misbehave for the window's length.
func (s *soak) miraklWindow(p plannedFault, stop <-chan struct{}) {
	var answer fakemirakl.Fault
	release := make(chan struct{})
	switch p.kind {
	case miraklUnavailable:
		answer = fakemirakl.HTMLError(http.StatusServiceUnavailable)
	case miraklRateLimited:
		answer = fakemirakl.RateLimited(strconv.Itoa(p.retryAfter))
	case miraklHang:
		// Held until the window ends (then answered with a token, if the
		// engine still waits, which it must not past request_timeout).
		answer = fakemirakl.Hang(release)
	case miraklRefuses:
		answer = fakemirakl.OAuthError(http.StatusUnauthorized, "invalid_client", "Client authentication failed")
	case miraklGarbage:
		answer = fakemirakl.Fault{Status: http.StatusOK, ContentType: "text/html", Body: "<html><body>captive portal</body></html>"}
	}
	var names []string
	for _, m := range p.mounts {
		names = append(names, s.mounts[m].path)
	}
	f := &fault{kind: p.kind, target: "Mirakl of " + strings.Join(names, ", "), mounts: p.mounts, start: time.Now(),
		retryAfter: time.Duration(p.retryAfter) * time.Second}
	for _, m := range p.mounts {
		s.mounts[m].fake.FailRandomly(1, answer)
	}
	s.log.add(f)
	s.t.Logf("%s %s: %s for %s", s.at(f.start), p.kind, f.target, p.length.Round(100*time.Millisecond))
	stopped := !sleepUntil(f.start.Add(p.length), stop)
	for _, m := range p.mounts {
		s.mounts[m].fake.FailRandomly(0, fakemirakl.Fault{})
	}
	close(release)
	s.log.finish(f, "")
	if !stopped {
		s.t.Logf("%s %s: %s answers again", s.at(f.end), p.kind, f.target)
	}
}

// clusterFault plays one fault of the cluster or the plugin, and waits until
// the cluster has a leader that every running node follows again. Every
// fault acts on the active node (or through it), so it waits for one first;
// when several nodes still report themselves active past the harness's
// bound, it skips the fault (the report lists it) rather than end the soak.
func (s *soak) clusterFault(p plannedFault) {
	t, c := s.t, s.cluster
	leader, err := c.TryWaitForLeader(t)
	if err != nil {
		s.skip(p, s.tolerate(err, "waiting for a leader before "+string(p.kind)))
		return
	}
	var since time.Time // step-down: when the leader became active
	if p.kind == stepDown {
		if since, err = activeSince(leader); err != nil {
			s.skip(p, "sys/leader on "+leader.Opts.Name+": "+trim(err.Error(), 200))
			return
		}
	}
	f := &fault{kind: p.kind, target: leader.Opts.Name, mounts: p.mounts, start: time.Now()}
	s.log.add(f)
	var detail string
	switch p.kind {
	case killLeader:
		f.noLeader = true
		leader.Kill(t)
		next, err := c.TryWaitForLeader(t)
		detail = "SIGKILL; " + s.leaderNow(next, err)
		s.log.finish(f, detail)
		restart := &fault{kind: "restart", target: leader.Opts.Name, start: time.Now()}
		s.log.add(restart)
		what := "restarted, unsealed, voting"
		if err := c.TryRestartNode(t, leader); err != nil {
			what = "restarted, unsealed; " + s.tolerate(err, "restarting "+leader.Opts.Name)
		} else if err := c.TryWaitForVoters(t, nodes); err != nil {
			what = "restarted, unsealed; " + s.tolerate(err, "waiting for the voters")
		}
		s.log.finish(restart, what)
		t.Logf("%s %s %s: %s; %s restarted at %s: %s", s.at(f.start), p.kind, f.target, detail, leader.Opts.Name, s.at(restart.end), what)
		return
	case stepDown:
		f.noLeader = true
		// The leader can change on its own between the look and the
		// step-down (an election under load): Vault then refuses it.
		if r := leader.CLI().Run(t, "operator", "step-down"); r.ExitCode != 0 {
			detail = "refused: " + trim(errorLines(r.Output()), 200) + "; "
		}
		moved, what := s.waitNewTerm(leader, since)
		detail += what
		if !moved {
			// Nothing changed hands: reads had an active node throughout.
			s.log.setNoLeader(f, false)
		}
	case killPlugin:
		pids := leader.PluginPIDs(t)
		for _, pid := range pids {
			if p, err := os.FindProcess(pid); err == nil {
				_ = p.Kill() // SIGKILL on unix
			}
		}
		detail = fmt.Sprintf("SIGKILL of plugin processes %v", pids)
	case pluginReload:
		r := leader.CLI().Run(t, "plugin", "reload", "-plugin="+vaulttest.DefaultPluginName)
		detail = "exit " + strconv.Itoa(r.ExitCode)
		if r.ExitCode != 0 {
			detail += ": " + trim(r.Output(), 200)
		}
	case roleWrite, roleRecreate:
		detail = s.roleFault(f, p, leader)
	case configRewrite:
		m := s.mounts[p.mounts[0]]
		// Through a node chosen by the seed: a standby forwards the write.
		via := c.Nodes[s.rng.IntN(len(c.Nodes))]
		if pr := via.Process(); pr == nil || pr.Exited() {
			via = leader
		}
		r := via.CLI().Run(t, m.configArgs(p.minTTL)...)
		f.target = m.path + " via " + via.Opts.Name
		detail = "min_ttl=" + p.minTTL + ", exit " + strconv.Itoa(r.ExitCode)
		if r.ExitCode != 0 {
			detail += ": " + trim(errorLines(r.Output()), 300)
		}
	}
	s.log.finish(f, detail)
	t.Logf("%s %s %s: %s (%s)", s.at(f.start), p.kind, f.target, detail, f.end.Sub(f.start).Round(100*time.Millisecond))
}

// roleFault plays a role write or a delete and re-create through a node the
// seed picks, and reads the role back to learn its audience after (a write
// may fail: a verified one during an outage, any during an election).
func (s *soak) roleFault(f *fault, p plannedFault, leader *vaulttest.Server) string {
	t, c := s.t, s.cluster
	mi := p.mounts[0]
	m := s.mounts[mi]
	via := c.Nodes[s.rng.IntN(len(c.Nodes))]
	if pr := via.Process(); pr == nil || pr.Exited() {
		via = leader
	}
	rolePath := m.path + "/roles/" + p.role
	before := m.roleVariant[p.role]
	f.role, f.target = p.role, rolePath+" via "+via.Opts.Name
	f.audBefore = roleAudience(mi, p.role, before)
	verify := "verify=" + strconv.FormatBool(p.verify)
	var parts []string
	write := func(args ...string) bool {
		f.writes++
		if p.verify {
			f.checks++
		}
		r := via.CLI().Run(t, append([]string{"write", rolePath, verify}, args...)...)
		part := strings.Join(args, " ") + " " + verify + ": exit " + strconv.Itoa(r.ExitCode)
		if r.ExitCode != 0 {
			part += ": " + trim(errorLines(r.Output()), 200)
		}
		parts = append(parts, part)
		return r.ExitCode == 0
	}
	switch p.kind {
	case roleWrite:
		if p.toAudience {
			write("audience=" + roleAudience(mi, p.role, 1-before))
		} else {
			write("min_ttl=" + p.minTTL)
		}
	case roleRecreate:
		r := via.CLI().Run(t, "delete", rolePath)
		parts = append(parts, "delete: exit "+strconv.Itoa(r.ExitCode))
		time.Sleep(roleGone)
		// Written again until it exists: a verified write fails while Mirakl
		// does, and the role must not stay deleted for the rest of the soak.
		for i := 0; i < 10 && !write("audience="+f.audBefore); i++ {
			if i >= 1 && p.verify {
				p.verify, verify = false, "verify=false"
			}
			time.Sleep(2 * time.Second)
		}
	}
	// What the cluster holds now, whatever the writes answered.
	after := ""
	for i := 0; i < 5 && after == ""; i++ {
		r := leader.CLI().Run(t, "read", "-field=audience", rolePath)
		if r.ExitCode == 0 {
			after = strings.TrimSpace(r.Stdout)
			break
		}
		if next, err := c.TryWaitForLeader(t); err == nil {
			leader = next
		}
		time.Sleep(time.Second)
	}
	if after == "" {
		t.Fatalf("%s: reading %s back after %s failed five times", s.at(time.Now()), rolePath, p.kind)
	}
	f.audAfter = after
	for v := range 2 {
		if roleAudience(mi, p.role, v) == after {
			m.roleVariant[p.role] = v
		}
	}
	return strings.Join(parts, "; ") + "; audience " + f.audBefore + " -> " + after
}

// tolerate is the text of err, a wait for the cluster that ended while
// several nodes still reported themselves active (Vault's transient state
// after a change of leader, which outlasted the harness's bound): the soak
// logs it and goes on. Any other failure of the cluster ends the soak.
func (s *soak) tolerate(err error, what string) string {
	if !errors.Is(err, vaulttest.ErrSeveralActive) {
		s.t.Fatalf("%s: %v", what, err)
	}
	s.t.Logf("%s %s: %v; going on", s.at(time.Now()), what, err)
	return trim(err.Error(), 300)
}

// leaderNow says which node is active after a wait for the leader.
func (s *soak) leaderNow(leader *vaulttest.Server, err error) string {
	if err != nil {
		return s.tolerate(err, "waiting for the next leader")
	}
	return leader.Opts.Name + " active"
}

// skip records a fault of the schedule that was not played, and why.
func (s *soak) skip(p plannedFault, why string) {
	s.log.skip(skippedFault{kind: p.kind, at: time.Now(), why: why})
	s.t.Logf("%s %s skipped: %s", s.at(time.Now()), p.kind, why)
}

// activeSince is when s last became the active node.
func activeSince(s *vaulttest.Server) (time.Time, error) {
	cfg := api.DefaultConfig()
	// Bounded: a node that lost the lead and drains its requests holds the
	// lock sys/leader waits for.
	cfg.Address, cfg.MaxRetries, cfg.Timeout = s.Addr, 0, 10*time.Second
	c, err := api.NewClient(cfg)
	if err != nil {
		return time.Time{}, err
	}
	l, err := c.Sys().Leader()
	if err != nil {
		return time.Time{}, err
	}
	return l.ActiveTime, nil
}

// waitNewTerm waits, after a step-down, until a node other than old is
// active, or old is active again since a later time (it may win the next
// election): the step-down returns before the election it starts, so a
// leader found at once may be the one stepping down. OpenBao's raft
// sometimes keeps the same node active without a new term; after 30s that
// is what the fault log says. The old node may also go on reporting itself
// active for a while after the next one took over (draining its requests):
// each wait for the leader tolerates that up to the harness's bound.
func (s *soak) waitNewTerm(old *vaulttest.Server, since time.Time) (moved bool, what string) {
	t := s.t
	deadline := time.Now().Add(30 * time.Second)
	for {
		leader, err := s.cluster.TryWaitForLeader(t)
		if err != nil {
			return true, s.tolerate(err, "waiting for the leader after the step-down")
		}
		if leader != old {
			return true, leader.Opts.Name + " active"
		}
		if at, err := activeSince(leader); err == nil && at.After(since) {
			return true, leader.Opts.Name + " active again, in a new term"
		}
		if time.Now().After(deadline) {
			return false, old.Opts.Name + " still active, in the same term, 30s after the step-down"
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// errorLines are the lines of a CLI error that say what went wrong (the
// status and Vault's "* ..." lines), not the URL.
func errorLines(out string) string {
	var keep []string
	for line := range strings.SplitSeq(out, "\n") {
		if line = strings.TrimSpace(line); strings.HasPrefix(line, "Code:") || strings.HasPrefix(line, "* ") {
			keep = append(keep, line)
		}
	}
	if len(keep) == 0 {
		return strings.TrimSpace(out)
	}
	return strings.Join(keep, " ")
}
