//go:build soak

package soak

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/fakemirakl"
	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/vaulttest"
)

// The gate's schedule (gate.go), which invariant 4 holds the engine to
// during an outage: after the n-th failure in a row no request for a
// jittered wait of at least half of 5s doubled n-1 times, capped at 1m; at
// least 30s after a refusal (doubling with each refusal in a row: the
// budget keeps the floor, an upper bound); at least Mirakl's Retry-After,
// capped at 5m. Each attempt is one HTTP request, but the first of an
// outage (the last request had succeeded: it may be a blip) retries within
// the request, up to inRequestRetries more (never after a refusal).
const (
	gateFirstWait    = 5 * time.Second
	gateLastWait     = time.Minute
	refusalHold      = 30 * time.Second
	maxRetryAfter    = 5 * time.Minute
	inRequestRetries = 4
)

// The engine's refresh point (path_token.go's refreshPoint): a token's
// successor is fetched in the background once the token has less than
// min(min_ttl + refreshAheadMargin, lifetime/2) left. Invariant 4 uses it to
// tell a request for a successor that was due from one that was not.
const refreshAheadMargin = 2 * time.Minute

// afterFailover is how long after a fault that replaced the active node's
// plugin process its successor's first refresh ahead may come (its first read
// or periodic run, once it has restored the token).
const afterFailover = 30 * time.Second

// Flatness of the plugin processes (invariant 5), between a process's first
// sample after warm-up (shorter in a short soak) and its last, when they lie
// at least minSpan apart: the active node's plugin, the one that serves the
// reads, is often replaced by a fault, so even short lives are judged.
const (
	warmup         = 20 * time.Second
	minSpan        = 10 * time.Second
	maxRSSGrowth   = 16 << 20 // bytes, or half the first sample if more
	maxThreadGrow  = 10
	maxFDGrowth    = 20
	maxConnsGrowth = 10 // the fakes' open connections from the engine
	// maxGoroutineGrowth: a few per request in flight and per reader's
	// stream; a leak per read adds 30 a second.
	maxGoroutineGrowth = 50
)

// violation is one broken promise, at a time of the soak.
type violation struct {
	at   time.Time
	what string
}

// verdict is one invariant's result.
type verdict struct {
	n          int
	name       string
	checked    string // what was checked, with its count
	violations []violation
	notes      []string
}

// slowRead is a read that waited, in the figures (not an invariant: the
// issue's invariants judge failures, not waits).
const slowRead = 2 * time.Second

// report checks every invariant and prints each with its count, the
// figures of the run, and each failure with its time and nearest fault.
func (s *soak) report() {
	t := s.t
	reads := s.readers.all()
	faults := s.log.all()

	var b strings.Builder
	fmt.Fprintf(&b, "\n==== soak report: %s, seed %d, %s (replay: make soak SOAK_SEED=%d SOAK_DURATION=%s)\n",
		s.kind, s.settings.seed, s.end.Sub(s.start).Round(time.Second), s.settings.seed, s.settings.duration)
	fmt.Fprintf(&b, "faults played (%d):\n", len(faults))
	for _, f := range faults {
		fmt.Fprintf(&b, "  %s..%s %-15s %s %s\n", s.at(f.start), s.at(f.end), f.kind, f.target, f.detail)
	}
	s.figures(&b, reads)

	s.severalActiveFigures(&b, faults)

	verdicts := []verdict{s.checkLeases(reads), s.checkIssuer(reads, faults), s.checkAvailability(reads, faults),
		s.checkBudget(reads, faults), s.checkFlat()}
	failed := false
	for _, v := range verdicts {
		state := "PASS"
		switch {
		case len(v.violations) > 0 && s.settings.allow[v.n]:
			state = "FAIL (allowed by SOAK_ALLOW)"
		case len(v.violations) > 0:
			state, failed = "FAIL", true
		}
		fmt.Fprintf(&b, "invariant %d (%s): %s; %d violations: %s\n", v.n, v.name, v.checked, len(v.violations), state)
		for _, n := range v.notes {
			fmt.Fprintf(&b, "    %s\n", n)
		}
		for i, x := range v.violations {
			if i == 10 {
				fmt.Fprintf(&b, "    ... and %d more\n", len(v.violations)-10)
				break
			}
			fmt.Fprintf(&b, "    %s %s; nearest fault: %s\n", s.at(x.at), x.what, s.nearestFault(faults, x.at))
		}
		if len(v.violations) > 0 {
			if lines := s.serverLogLines(v.violations[0].at, 3*time.Second, 8); len(lines) > 0 {
				fmt.Fprintf(&b, "    server log around the first (%s):\n      %s\n", s.at(v.violations[0].at), strings.Join(lines, "\n      "))
			}
		}
	}
	t.Log(b.String())
	if failed {
		t.Errorf("%s: soak seed %d broke a promise (see the report above); replay with make soak SOAK_SEED=%d SOAK_DURATION=%s",
			s.kind, s.settings.seed, s.settings.seed, s.settings.duration)
	}
}

// addSeveralActive puts in the fault log each time, during the soak, in
// which several nodes reported themselves active (the cluster's record), so
// that the invariants see them: invariant 3 counts the failed reads through
// the nodes that had lost the lead apart, invariant 4 takes the new active
// node's plugin as a new process.
func (s *soak) addSeveralActive() {
	for _, e := range s.cluster.SeveralActiveEpisodes() {
		end := e.End
		if end.IsZero() || end.After(s.end) {
			end = s.end
		}
		if end.Before(s.start) {
			continue // while the cluster started
		}
		f := &fault{kind: severalActive, target: strings.Join(e.Nodes, ", "), start: e.Start, end: end}
		stale := e.Stale()
		for i, n := range s.cluster.Nodes {
			if slices.Contains(stale, n.Opts.Name) {
				f.stale = append(f.stale, i)
			}
		}
		f.detail = e.Newest + " became active last; " + strings.Join(stale, ", ") + " had not stepped down yet"
		if e.Newest == "" {
			f.detail = "no look could tell which became active last"
		}
		if e.End.IsZero() {
			f.detail += "; still so at the end"
		}
		s.log.add(f)
	}
}

// severalActiveFigures prints the times in which several nodes reported
// themselves active (listed among the faults too) and the faults skipped for
// want of one active node: Vault's, counted apart from the engine's.
func (s *soak) severalActiveFigures(b *strings.Builder, faults []fault) {
	var n int
	var total, longest time.Duration
	for _, f := range faults {
		if f.kind == severalActive {
			n++
			d := f.end.Sub(f.start)
			total += d
			longest = max(longest, d)
		}
	}
	skipped := s.log.allSkipped()
	if n == 0 && len(skipped) == 0 {
		fmt.Fprintf(b, "several nodes active: never seen\n")
		return
	}
	fmt.Fprintf(b, "several nodes active: %d times, %s in all, the longest %s (a node that lost the lead and had not stepped down yet; Vault's, not the engine's)\n",
		n, total.Round(100*time.Millisecond), longest.Round(100*time.Millisecond))
	if len(skipped) > 0 {
		fmt.Fprintf(b, "faults skipped (%d):\n", len(skipped))
		for _, f := range skipped {
			fmt.Fprintf(b, "  %s %-15s %s\n", s.at(f.at), f.kind, f.why)
		}
	}
}

// figures prints the run's numbers: reads by outcome, tokens and requests.
func (s *soak) figures(b *strings.Builder, reads []read) {
	classes := map[errorClass]int{}
	examples := map[errorClass]read{}
	var ok, warned int
	var slowest time.Duration
	var slowAt time.Time
	slow := 0 // reads that waited: no reader should wait on Mirakl while a valid token is cached (issue 24)
	for _, r := range reads {
		if r.failed() {
			classes[r.class]++
			if _, ok := examples[r.class]; !ok {
				examples[r.class] = r
			}
			continue
		}
		ok++
		if r.warnings > 0 {
			warned++
		}
		d := r.end.Sub(r.start)
		if d > slowest {
			slowest, slowAt = d, r.start
		}
		if d > slowRead {
			slow++
		}
	}
	fmt.Fprintf(b, "reads: %d (%.1f/s), %d ok (%d with a warning), %d failed", len(reads),
		float64(len(reads))/s.end.Sub(s.start).Seconds(), ok, warned, len(reads)-ok)
	for _, c := range slices.Sorted(maps.Keys(classes)) {
		fmt.Fprintf(b, "; %s %d", c, classes[c])
	}
	fmt.Fprintf(b, "\nslowest successful read: %s at %s; %d successful reads took more than %s\n", slowest.Round(time.Millisecond), s.at(slowAt), slow, slowRead)
	for _, c := range slices.Sorted(maps.Keys(examples)) {
		r := examples[c]
		fmt.Fprintf(b, "  first %q failure: %s via node%d at %s, HTTP %d: %s\n", c, s.mounts[r.mount].tokenPath(r.role), r.node+1, s.at(r.start), r.status, trim(r.err, 200))
	}
	byRole := map[string][2]int{} // reads, failed
	for _, r := range reads {
		n := byRole[r.role]
		n[0]++
		if r.failed() {
			n[1]++
		}
		byRole[r.role] = n
	}
	var roleParts []string
	for _, role := range slices.Sorted(maps.Keys(byRole)) {
		name := role
		if name == "" {
			name = "(default token)"
		}
		roleParts = append(roleParts, fmt.Sprintf("%s %d (%d failed)", name, byRole[role][0], byRole[role][1]))
	}
	fmt.Fprintf(b, "reads by role, over mounts: %s\n", strings.Join(roleParts, ", "))
	for i, m := range s.mounts {
		st := m.fake.Stats()
		perAud := map[string]int{}
		for _, tok := range m.fake.Tokens() {
			aud, _ := m.fake.AudienceOf(tok.Token)
			role, _ := roleOfAudience(i, aud)
			if role == "" {
				role = "default"
			}
			perAud[role]++
		}
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(perAud)) {
			parts = append(parts, fmt.Sprintf("%s %d", k, perAud[k]))
		}
		fmt.Fprintf(b, "%s: Mirakl saw %d requests (%d faults, %d refused), issued %d tokens of %s (%s); %d violations in the fake's eyes\n",
			m.path, st.Requests, st.Faults, st.Refused, st.Issued, tokenLife, strings.Join(parts, ", "), len(m.fake.Violations()))
		for _, x := range m.fake.Violations() {
			fmt.Fprintf(b, "  fake violation: %s\n", trim(x, 200))
		}
	}
}

// nearestFault describes the fault closest in time to at.
func (s *soak) nearestFault(faults []fault, at time.Time) string {
	best, dist := -1, time.Duration(1<<62)
	for i, f := range faults {
		var d time.Duration
		switch {
		case at.Before(f.start):
			d = f.start.Sub(at)
		case !f.end.IsZero() && at.After(f.end):
			d = at.Sub(f.end)
		}
		if d < dist {
			best, dist = i, d
		}
	}
	if best < 0 {
		return "none"
	}
	f := faults[best]
	where := "during it"
	switch {
	case at.Before(f.start):
		where = fmt.Sprintf("%s before it", dist.Round(100*time.Millisecond))
	case dist > 0:
		where = fmt.Sprintf("%s after it", dist.Round(100*time.Millisecond))
	}
	return fmt.Sprintf("%s %s %s..%s (%s)", f.kind, f.target, s.at(f.start), s.at(f.end), where)
}

// issued maps every token any fake issued to its mount and record.
func (s *soak) issued() map[string]struct {
	mount int
	tok   fakemirakl.IssuedToken
} {
	out := map[string]struct {
		mount int
		tok   fakemirakl.IssuedToken
	}{}
	for i, m := range s.mounts {
		for _, tok := range m.fake.Tokens() {
			out[tok.Token] = struct {
				mount int
				tok   fakemirakl.IssuedToken
			}{i, tok}
		}
	}
	return out
}

// Invariant 1: no read returned a token that had expired, or a lease (or
// expires_in) longer than the token's remaining life. The fake's clock is
// the soak's: a token expired if the fake's expiry came before the read's
// answer; its remaining life is counted from the read's start, with a
// second for the whole-second rounding and the moment between the fake's
// issue and the engine's receipt.
func (s *soak) checkLeases(reads []read) verdict {
	v := verdict{n: 1, name: "no expired token, no lease past the token"}
	issued := s.issued()
	checked := 0
	for _, r := range reads {
		if r.failed() {
			continue
		}
		is, ok := issued[r.token]
		if !ok {
			continue // invariant 2's
		}
		checked++
		left := is.tok.ExpiresAt.Sub(r.start)
		switch {
		case is.tok.ExpiresAt.Before(r.end):
			v.violations = append(v.violations, violation{r.end, fmt.Sprintf("%s via node%d returned a token that expired %s before the answer",
				s.mounts[r.mount].path, r.node+1, r.end.Sub(is.tok.ExpiresAt).Round(time.Millisecond))})
		case time.Duration(r.lease)*time.Second > left+time.Second:
			v.violations = append(v.violations, violation{r.start, fmt.Sprintf("%s via node%d: lease %ds, the token had %s left",
				s.mounts[r.mount].path, r.node+1, r.lease, left.Round(time.Millisecond))})
		case time.Duration(r.expiresIn)*time.Second > left+time.Second:
			v.violations = append(v.violations, violation{r.start, fmt.Sprintf("%s via node%d: expires_in %ds, the token had %s left",
				s.mounts[r.mount].path, r.node+1, r.expiresIn, left.Round(time.Millisecond))})
		case r.lease < 1 || !r.renewable:
			v.violations = append(v.violations, violation{r.start, fmt.Sprintf("%s via node%d: lease %ds renewable %v, want a renewable lease of at least 1s",
				s.mounts[r.mount].path, r.node+1, r.lease, r.renewable)})
		}
	}
	v.checked = fmt.Sprintf("%d successful reads checked", checked)
	return v
}

// Invariant 2: every token a read returned was issued by the fake of the
// mount it was read from, for the audience of what was read: none for the
// default token, the role's audience at the time for a role's (either one
// when the read overlapped a role fault that changed it).
func (s *soak) checkIssuer(reads []read, faults []fault) verdict {
	v := verdict{n: 2, name: "every token issued by the mount's own Mirakl, for the role's audience"}
	issued := s.issued()
	checked, roleReads, overlapping := 0, 0, 0
	for _, r := range reads {
		if r.failed() {
			continue
		}
		checked++
		is, ok := issued[r.token]
		switch {
		case !ok:
			v.violations = append(v.violations, violation{r.start, fmt.Sprintf("%s via node%d returned a token no fake issued (%d bytes)",
				s.mounts[r.mount].path, r.node+1, len(r.token))})
			continue
		case is.mount != r.mount:
			v.violations = append(v.violations, violation{r.start, fmt.Sprintf("%s via node%d returned a token of %s's Mirakl",
				s.mounts[r.mount].tokenPath(r.role), r.node+1, s.mounts[is.mount].path)})
			continue
		}
		if r.role != "" {
			roleReads++
		}
		got, _ := s.mounts[r.mount].fake.AudienceOf(r.token)
		want, overlapped := s.audiencesFor(r, faults)
		if overlapped {
			overlapping++
		}
		if !slices.Contains(want, got) {
			v.violations = append(v.violations, violation{r.start, fmt.Sprintf("%s via node%d returned a token for audience %q, want %q",
				s.mounts[r.mount].tokenPath(r.role), r.node+1, got, strings.Join(want, `" or "`))})
		}
	}
	v.checked = fmt.Sprintf("%d successful reads checked (%d of roles, %d of them overlapping a role fault)", checked, roleReads, overlapping)
	return v
}

// audiencesFor is the audiences a token a read returned may be for: the one
// its role had when the read began (the default token: none), and those of
// the role faults the read overlapped; overlapped says whether there were.
func (s *soak) audiencesFor(r read, faults []fault) (want []string, overlapped bool) {
	if r.role == "" {
		return []string{""}, false
	}
	current := roleAudience(r.mount, r.role, 0)
	for _, f := range faults {
		if f.role != r.role || !f.covers(r.mount) {
			continue
		}
		switch {
		case !f.end.After(r.start):
			current = f.audAfter // over before the read began
		case f.start.Before(r.end):
			overlapped = true
			want = append(want, f.audBefore, f.audAfter)
		}
	}
	return append(want, current), overlapped
}

// lastDrop is the start of the last fault before r that dropped the token
// of r's role: a write of the role, or a config write of the mount.
func lastDrop(faults []fault, r read) time.Time {
	var last time.Time
	for _, f := range faults {
		if f.covers(r.mount) && f.start.Before(r.start) && (f.kind == configRewrite || (f.role == r.role && f.role != "")) {
			last = f.start
		}
	}
	return last
}

// roleGoneAt: role was deleted (a roleRecreate under way, and electionGrace
// after, for the nodes' caches of the role) when the read overlapped.
func roleGoneAt(faults []fault, r read) bool {
	for _, f := range faults {
		if f.kind == roleRecreate && f.role == r.role && f.covers(r.mount) &&
			r.end.After(f.start) && r.start.Before(f.end.Add(electionGrace)) {
			return true
		}
	}
	return false
}

// Invariant 3: no read failed with an engine error while a token valid for
// more than validMargin existed (issued for that mount before the read
// began) and the cluster had an active node. Vault's own errors (no answer
// from a killed node, sealed, election, plugin restart) are counted apart,
// and only while a cluster fault explains them (from its start until 30s
// after its end): one with no fault near is a failure too, since nothing
// but the plugin can explain it.
func (s *soak) checkAvailability(reads []read, faults []fault) verdict {
	v := verdict{n: 3, name: "no engine error while a valid token exists and a node is active"}
	// Each role's tokens (any of its audiences) and the default token's,
	// per mount, in order of issue.
	tokens := make([]map[string][]fakemirakl.IssuedToken, len(s.mounts))
	for i, m := range s.mounts {
		tokens[i] = map[string][]fakemirakl.IssuedToken{}
		for _, tok := range m.fake.Tokens() {
			aud, _ := m.fake.AudienceOf(tok.Token)
			role, _ := roleOfAudience(i, aud)
			tokens[i][role] = append(tokens[i][role], tok)
		}
	}
	var judged, noLeader, noToken, noRole int
	apart := map[errorClass]int{}
	// Vault answers "internal error" for its own failures too; its log says
	// which: a lease it could not register (a storage write under load).
	leaseFailures := s.serverLogTimes("failed to register lease")
	for _, r := range reads {
		if !r.failed() {
			continue
		}
		if r.class == classOther && strings.Contains(r.err, "internal error") && anyWithin(leaseFailures, r.start.Add(-time.Second), r.end.Add(time.Second)) {
			apart[classLease]++
			continue
		}
		if throughStaleNode(faults, r) {
			apart[classStaleNode]++
			continue
		}
		if r.class == classNoRole {
			if r.role != "" && roleGoneAt(faults, r) {
				noRole++
				continue
			}
			v.violations = append(v.violations, violation{r.start, fmt.Sprintf("%s via node%d: %q while the role existed: %s",
				s.mounts[r.mount].tokenPath(r.role), r.node+1, r.class, r.err)})
			continue
		}
		switch r.class {
		case classNodeDown, classSealed, classElection, classPlugin:
			if explainedByClusterFault(faults, r) {
				apart[r.class]++
				continue
			}
			v.violations = append(v.violations, violation{r.start, fmt.Sprintf("%s via node%d failed with Vault's %q but no cluster fault was near: %s",
				s.mounts[r.mount].path, r.node+1, r.class, r.err)})
			continue
		}
		judged++
		if duringElection(faults, r) {
			noLeader++
			continue
		}
		ts := tokens[r.mount][r.role]
		i := sort.Search(len(ts), func(i int) bool { return !ts[i].IssuedAt.Before(r.start) })
		// A role's token is dropped by a write of the role and by a config
		// write (whose check fetches the default token only): one issued
		// before is no longer the role's.
		if i == 0 || !ts[i-1].ExpiresAt.After(r.end.Add(validMargin)) || (r.role != "" && ts[i-1].IssuedAt.Before(lastDrop(faults, r))) {
			noToken++
			continue
		}
		left := ts[i-1].ExpiresAt.Sub(r.end)
		v.violations = append(v.violations, violation{r.start, fmt.Sprintf("%s via node%d failed after %s (HTTP %d, %s) while a token with %s left existed: %s",
			s.mounts[r.mount].tokenPath(r.role), r.node+1, r.end.Sub(r.start).Round(time.Millisecond), r.status, r.class, left.Round(time.Second), r.err)})
	}
	v.checked = fmt.Sprintf("%d failed reads judged (engine, timeout, other), %d excused with no active node, %d with no token of the role valid for %s; %d reads of a deleted role (expected, counted apart)",
		judged, noLeader, noToken, validMargin, noRole)
	if len(apart) > 0 {
		var parts []string
		for _, c := range slices.Sorted(maps.Keys(apart)) {
			parts = append(parts, fmt.Sprintf("%s %d", c, apart[c]))
		}
		v.notes = append(v.notes, "Vault's own errors during cluster faults, counted apart: "+strings.Join(parts, ", "))
	}
	return v
}

// classStaleNode: a read that failed through a node that still reported
// itself active after another node had taken over. Vault holds such a node's
// requests while it drains the ones in flight (up to 90s) and then cancels
// them: whatever the read got, the node was not the cluster's active one.
const classStaleNode errorClass = "through a node that had lost the lead"

// throughStaleNode: the read went through a node that still reported itself
// active while another was (a severalActive time, and electionGrace after).
func throughStaleNode(faults []fault, r read) bool {
	for _, f := range faults {
		if f.kind == severalActive && slices.Contains(f.stale, r.node) &&
			r.end.After(f.start) && r.start.Before(f.end.Add(electionGrace)) {
			return true
		}
	}
	return false
}

// classLease: Vault's 500 "internal error" when its log shows, at the time,
// that it failed to register the read's lease: Vault's storage, not the engine.
const classLease errorClass = "vault lease registration failed"

func anyWithin(times []time.Time, from, to time.Time) bool {
	for _, t := range times {
		if !t.Before(from) && !t.After(to) {
			return true
		}
	}
	return false
}

// duringElection: the read overlapped a time without an active node (a
// leader killed or stepped down, until every node followed the next one,
// and electionGrace after).
func duringElection(faults []fault, r read) bool {
	for _, f := range faults {
		if f.noLeader && r.end.After(f.start) && r.start.Before(f.end.Add(electionGrace)) {
			return true
		}
	}
	return false
}

// explainedByClusterFault: the read overlapped a cluster fault or the 30s
// after it (a restarted node unseals, a plugin starts again).
func explainedByClusterFault(faults []fault, r read) bool {
	for _, f := range faults {
		if !f.isMirakl() && r.end.After(f.start.Add(-time.Second)) && r.start.Before(f.end.Add(30*time.Second)) {
			return true
		}
	}
	return false
}

// gateAttempts is the most attempts the gate lets out in a window of
// length d, starting with an open gate, when every answer is the same
// failure: each wait at its shortest jitter.
func gateAttempts(d time.Duration, kind faultKind, retryAfter time.Duration) int {
	n, elapsed := 1, time.Duration(0)
	if kind != miraklRefuses {
		n += inRequestRetries // the first attempt's retries
	}
	for k := 0; ; k++ {
		wait := min(gateFirstWait<<min(k, 16), gateLastWait) / 2
		switch kind {
		case miraklRefuses:
			wait = max(wait, refusalHold)
		case miraklRateLimited:
			wait = max(wait, min(retryAfter, maxRetryAfter))
		}
		if elapsed += wait; elapsed > d {
			return n
		}
		n++
	}
}

// Invariant 4: requests to Mirakl within budget. While Mirakl answers, per
// role of each mount (the default token counting as one, a request telling
// its role by its audience): at most 2 per token lifetime (and one more for
// the interval's edges), plus one per config write (its check, or the
// role's next read: a config write drops every role's token), plus two per
// write of the role (its verify check, and its next read's request: a write
// or delete drops the role's token). During each outage window (and
// request_timeout after it, for requests still on their way), per mount, for
// all its roles together (the gate is the mount's): the gate's schedule, one
// HTTP request per attempt, started afresh by each fault that gives the
// active node a new plugin process (its gate lives in memory), plus one per
// config write or verified role write (with its in-request retries, if it met
// the outage first) and one per role write. Restarts, kills, reloads and
// failovers get nothing (the token is restored from storage), with one
// exception, at most one request per such fault and role: a second request
// for a successor that was already due (dueSuccessors).
func (s *soak) checkBudget(reads []read, faults []fault) verdict {
	v := verdict{n: 4, name: "requests to Mirakl within budget"}
	var resets []time.Time
	for _, f := range faults {
		if f.kind.resetsGate() {
			resets = append(resets, f.start)
		}
	}
	var total, healthyReqs, strays int
	var healthy time.Duration
	worst, worstRatio := "", 0.0
	var allowed []string
	targets := append([]string{""}, roleNames...)
	for mi, m := range s.mounts {
		var seen []fakemirakl.Request
		for _, r := range m.fake.Seen() {
			if !r.Arrived.Before(s.start) {
				seen = append(seen, r)
			}
		}
		slices.SortStableFunc(seen, func(a, b fakemirakl.Request) int { return a.Arrived.Compare(b.Arrived) })
		total += len(seen)
		issued := map[string]fakemirakl.IssuedToken{}
		for _, tok := range m.fake.Tokens() {
			issued[tok.Token] = tok
		}
		// requestsOf: role's requests (an audience of no role: a stray,
		// the fake's violation too; counted in the mount's total only).
		requestsOf := map[string][]fakemirakl.Request{}
		for _, r := range seen {
			role, ok := roleOfAudience(mi, r.Form.Get("audience"))
			if !ok {
				strays++
				continue
			}
			requestsOf[role] = append(requestsOf[role], r)
		}
		count := func(reqs []fakemirakl.Request, from, to time.Time) int {
			n := 0
			for _, r := range reqs {
				if !r.Arrived.Before(from) && r.Arrived.Before(to) {
					n++
				}
			}
			return n
		}
		arrivals := func(reqs []fakemirakl.Request, due map[int]fault, from, to time.Time) string {
			var parts []string
			for i, r := range reqs {
				if !r.Arrived.Before(from) && r.Arrived.Before(to) {
					part := fmt.Sprintf("%s %s %d", s.at(r.Arrived), r.Outcome, r.Status)
					if aud := r.Form.Get("audience"); aud != "" {
						part += " " + aud
					}
					if _, ok := due[i]; ok {
						part += " (successor due)"
					}
					parts = append(parts, part)
				}
			}
			return strings.Join(parts, ", ")
		}
		// writes: config writes of the mount in [from, to); roleWrites and
		// roleChecks: the writes (and verified ones) of role ("": of every
		// role) by role faults that began in it.
		writes := func(from, to time.Time) int {
			n := 0
			for _, f := range faults {
				if f.kind == configRewrite && f.covers(mi) && !f.start.Before(from) && f.start.Before(to) {
					n++
				}
			}
			return n
		}
		roleWrites := func(role string, from, to time.Time) (writes, checks int) {
			for _, f := range faults {
				if f.role != "" && (role == "" || f.role == role) && f.covers(mi) && !f.start.Before(from) && f.start.Before(to) {
					writes += f.writes
					checks += f.checks
				}
			}
			return writes, checks
		}
		// Outage windows, and what lies between them.
		var windows []fault
		for _, f := range faults {
			if f.isMirakl() && f.covers(mi) {
				windows = append(windows, f)
			}
		}
		type span struct{ from, to time.Time }
		var calm []span
		from := s.start
		for _, w := range windows {
			if w.start.After(from) {
				calm = append(calm, span{from, w.start})
			}
			// A window that starts within request_timeout of the one before
			// counts from where that one's count ended.
			start := w.start
			if from.After(start) {
				start = from
			}
			end := w.end.Add(requestTimeout)
			budget, segStart, starts := 0, start, 1
			for _, r := range resets {
				if r.After(w.start) && r.Before(end) {
					budget += gateAttempts(r.Sub(segStart), w.kind, w.retryAfter)
					segStart = r
					starts++
				}
			}
			// At the window's start, and in each new plugin process, the
			// gate knows nothing yet: every other token of the mount due at
			// that moment may make its one first attempt alongside (a
			// refusal is not retried; a failed retried attempt stops the
			// others' retries), as many as the mount has tokens (seed
			// 20261204: a plugin reload 15s into a refusal, then three
			// tokens' first requests within 0.2s).
			budget += starts * (len(targets) - 1)
			// A config write's check is one attempt; when it meets the
			// outage before any request has failed (the gate it inherits is
			// still open, as when the old config's refresh is in flight), it
			// retries within its request as a first attempt does (seed
			// 846441952: a verified write at t+45 s of a 503 window). A
			// verified role write's check likewise; any role write drops the
			// role's token, and its next read may ask once more.
			rw, rc := roleWrites("", start, end)
			budget += gateAttempts(end.Sub(segStart), w.kind, w.retryAfter) + (writes(start, end)+rc)*(1+inRequestRetries) + rw
			// Once Mirakl answers again, each token's next request brings
			// it a token: those (one per token at most) are the recovery,
			// not the outage's cost.
			recovered := 0
			for _, r := range seen {
				if r.Arrived.After(w.end) && r.Arrived.Before(end) && r.Outcome == fakemirakl.OutcomeIssued {
					recovered++
				}
			}
			n := count(seen, start, end) - min(recovered, len(targets))
			if ratio := float64(n) / float64(budget); ratio > worstRatio || worst == "" {
				worst, worstRatio = fmt.Sprintf("%s %s at %s for %s: %d requests (all roles), budget %d", m.path, w.kind, s.at(w.start), w.end.Sub(w.start).Round(100*time.Millisecond), n, budget), ratio
			}
			if n > budget {
				v.violations = append(v.violations, violation{w.start, fmt.Sprintf("%s: %d requests (all roles) during %s of %s (until %s), budget %d (the gate's schedule, + %d config and %d role writes, %d verified): %s",
					m.path, n, w.kind, w.end.Sub(w.start).Round(100*time.Millisecond), s.at(end), budget, writes(start, end), rw, rc, arrivals(seen, nil, start, end))})
			}
			from = end
		}
		if end := s.end.Add(requestTimeout); end.After(from) {
			calm = append(calm, span{from, end})
		}
		// While Mirakl answered: per role.
		for _, role := range targets {
			reqs := requestsOf[role]
			var served []read
			for _, r := range reads {
				if r.mount == mi && r.role == role && !r.failed() {
					served = append(served, r)
				}
			}
			due := dueSuccessors(reqs, served, issued, faults)
			name := m.tokenPath(role)
			for _, c := range calm {
				d := c.to.Sub(c.from)
				n := count(reqs, c.from, c.to)
				extra := 0
				for _, i := range slices.Sorted(maps.Keys(due)) {
					if at := reqs[i].Arrived; !at.Before(c.from) && at.Before(c.to) {
						extra++
						f := due[i]
						allowed = append(allowed, fmt.Sprintf("%s %s (%s %s at %s)", name, s.at(at), f.kind, f.target, s.at(f.start)))
					}
				}
				rw, rc := 0, 0
				if role != "" {
					rw, rc = roleWrites(role, c.from, c.to)
				}
				budget := int(2*d/tokenLife) + 1 + writes(c.from, c.to) + rw + rc + extra
				healthy += d
				healthyReqs += n
				if n > budget {
					v.violations = append(v.violations, violation{c.from, fmt.Sprintf("%s: %d requests while Mirakl answered for %s (until %s), budget %d (2 per %s lifetime + 1, + %d config writes, + %d role writes and %d checks, + %d successors due at a failover): %s",
						name, n, d.Round(time.Second), s.at(c.to), budget, tokenLife, writes(c.from, c.to), rw, rc, extra, arrivals(reqs, due, c.from, c.to))})
				}
			}
		}
	}
	v.checked = fmt.Sprintf("%d requests from %d mounts, %d roles each and the default token", total, len(s.mounts), len(roleNames))
	if strays > 0 {
		v.violations = append(v.violations, violation{s.end, fmt.Sprintf("%d requests carried an audience of no role of their mount", strays)})
	}
	if healthy > 0 {
		v.notes = append(v.notes, fmt.Sprintf("while Mirakl answered: %d requests in %s summed over mounts and roles, %.2f per token lifetime per role",
			healthyReqs, healthy.Round(time.Second), float64(healthyReqs)/(float64(healthy)/float64(tokenLife))))
	}
	if len(allowed) > 0 {
		v.notes = append(v.notes, fmt.Sprintf("allowed while Mirakl answered, as the second request for a successor already due around a failover (one per failover and role): %d: %s",
			len(allowed), strings.Join(allowed, "; ")))
	}
	if worst != "" {
		v.notes = append(v.notes, "worst outage window: "+worst)
	}
	return v
}

// dueSuccessors are the requests of one mount's Mirakl (seen, by index, with
// the fault that explains each) that invariant 4 allows on top of a healthy interval's
// budget: at most one per fault that gave the active node a new plugin
// process (resetsGate), the second of two requests that arrived around it
// while the token the mount's readers were being served had already passed
// its refresh point, the same token both times: the first before the fault
// ended (from request_timeout before it), the second after it began (until
// afterFailover after it). Such a pair is the old process's
// refresh ahead, under way or cancelled at its teardown (its token never
// reached storage), and the new process's refresh ahead of the token it
// restored: one succession asked for twice, not a token fetched for nothing.
//
// The rule stays narrow on purpose: a new process that fetches a token while
// the restored one is not due (the restore failed, or was skipped) still
// breaks the budget, as do two requests both after the fault (the new
// process asking twice), a pair with no such fault around it, and a third
// request.
func dueSuccessors(seen []fakemirakl.Request, served []read, issued map[string]fakemirakl.IssuedToken, faults []fault) map[int]fault {
	// The engine's token at a time, seen from outside: the one of the
	// mount's successful read (served) that ended last before it.
	served = slices.Clone(served)
	slices.SortStableFunc(served, func(a, b read) int { return a.end.Compare(b.end) })
	// The least min_ttl of the soak gives the latest refresh point: the
	// fewest requests count as due.
	minTTL := strictestMinTTL()
	dueAt := func(at time.Time) (string, bool) {
		i := sort.Search(len(served), func(i int) bool { return !served[i].end.Before(at) })
		if i == 0 {
			return "", false
		}
		tok, ok := issued[served[i-1].token]
		if !ok {
			return "", false // invariant 2's
		}
		point := min(minTTL+refreshAheadMargin, tok.ExpiresAt.Sub(tok.IssuedAt)/2)
		return tok.Token, tok.ExpiresAt.Sub(at) < point
	}
	out := map[int]fault{}
	for _, f := range faults {
		if !f.kind.resetsGate() {
			continue
		}
		from, to := f.start.Add(-requestTimeout), f.end.Add(afterFailover)
		// first: served tokens whose successor a request that the old
		// process could have sent (before the fault ended) asked for.
		first := map[string]bool{}
		for i, r := range seen {
			if _, taken := out[i]; taken || r.Arrived.Before(from) || !r.Arrived.Before(to) {
				continue
			}
			tok, due := dueAt(r.Arrived)
			if !due {
				continue
			}
			// The second: one a new process could have sent (after the
			// fault began).
			if first[tok] && r.Arrived.After(f.start) {
				out[i] = f
				break
			}
			if r.Arrived.Before(f.end) {
				first[tok] = true
			}
		}
	}
	return out
}

// strictestMinTTL is the least min_ttl any config of the soak has (the
// mounts' first, and those a config rewrite picks from).
func strictestMinTTL() time.Duration {
	least, err := time.ParseDuration(initialMinTTL)
	if err != nil {
		panic(err)
	}
	for _, v := range rewriteMinTTLs {
		d, err := time.ParseDuration(v)
		if err != nil {
			panic(err)
		}
		least = min(least, d)
	}
	return least
}

// Invariant 5: the plugin processes' memory, threads and open descriptors
// stay flat, no plugin process is left over, and the engine's connections
// to Mirakl do not pile up. Goroutines cannot be counted from outside the
// process; threads and descriptors stand in for them.
func (s *soak) checkFlat() verdict {
	v := verdict{n: 5, name: "plugin RSS, goroutines, threads and open files flat"}
	sm := s.sampler
	sm.mu.Lock()
	procs := slices.Clone(sm.procs)
	conns := slices.Clone(sm.conns)
	sm.mu.Unlock()
	if sm.why != "" {
		v.checked = "not measured: " + sm.why
		return v
	}
	byPID := map[int][]procSample{}
	for _, p := range procs {
		byPID[p.pid] = append(byPID[p.pid], p)
	}
	judged, goroutinesJudged := 0, 0
	warm, span := min(warmup, s.settings.duration/6), minSpan
	for _, pid := range slices.Sorted(maps.Keys(byPID)) {
		j, ok := judgeProcess(byPID[pid], warm, span, s.at)
		if !ok {
			continue
		}
		judged++
		if j.goroutinesKnown {
			goroutinesJudged++
		}
		v.notes = append(v.notes, j.growth)
		if j.grew {
			v.violations = append(v.violations, violation{j.at, "grew: " + j.growth})
		}
	}
	v.checked = fmt.Sprintf("%d samples of %d plugin processes, %d lived %s past a warm-up of %s and were judged (%d of them on goroutines too, as the active node's)",
		len(procs), len(byPID), judged, span, warm, goroutinesJudged)
	if len(conns) > 1 {
		for m := range s.mounts[:min(2, len(s.mounts))] {
			first, last := conns[0][m], conns[len(conns)-1][m]
			v.notes = append(v.notes, fmt.Sprintf("%s: open connections to its Mirakl %d -> %d", s.mounts[m].path, first, last))
			if last-first > maxConnsGrowth {
				v.violations = append(v.violations, violation{s.end, fmt.Sprintf("%s: connections to Mirakl grew from %d to %d", s.mounts[m].path, first, last)})
			}
		}
	}
	// Left over: more plugin processes than the cluster runs (Vault: the
	// active node's; OpenBao: one per node).
	want := 1
	if s.kind.StandbysRunPlugins() {
		want = nodes
	}
	if pids, err := vaulttest.ProcessesIn(s.cluster.PluginDir); err == nil {
		v.notes = append(v.notes, fmt.Sprintf("plugin processes at the end: %d (want at most %d)", len(pids), want))
		if len(pids) > want {
			v.violations = append(v.violations, violation{s.end, fmt.Sprintf("%d plugin processes run at the end, want at most %d: %v", len(pids), want, pids)})
		}
	}
	return v
}

// processJudgement is invariant 5's look at one plugin process.
type processJudgement struct {
	growth          string // what it was at the start and at the end
	grew            bool
	goroutinesKnown bool
	at              time.Time // its last sample
}

// judgeProcess compares one process's first sample after warm with its last,
// if they lie span apart (not ok otherwise): RSS, threads and descriptors;
// goroutines between its first and last samples that know them (those taken
// while it served as the active node's plugin).
func judgeProcess(ps []procSample, warm, span time.Duration, at func(time.Time) string) (processJudgement, bool) {
	i := slices.IndexFunc(ps, func(p procSample) bool { return p.at.Sub(ps[0].at) >= warm })
	if i < 0 || ps[len(ps)-1].at.Sub(ps[i].at) < span {
		return processJudgement{}, false
	}
	first, last := ps[i], ps[len(ps)-1]
	j := processJudgement{at: last.at}
	j.growth = fmt.Sprintf("pid %d on %s, %s..%s: RSS %.1f -> %.1f MiB, threads %d -> %d, fds %d -> %d",
		first.pid, first.node, at(first.at), at(last.at), mib(first.rss), mib(last.rss), first.threads, last.threads, first.fds, last.fds)
	j.grew = last.rss-first.rss > max(maxRSSGrowth, first.rss/2) || last.threads-first.threads > maxThreadGrow || last.fds-first.fds > maxFDGrowth
	known := slices.DeleteFunc(slices.Clone(ps[i:]), func(p procSample) bool { return p.goroutines < 0 })
	if len(known) > 1 {
		g0, g1 := known[0], known[len(known)-1]
		j.growth += fmt.Sprintf(", goroutines %d -> %d (%s..%s)", g0.goroutines, g1.goroutines, at(g0.at), at(g1.at))
		j.grew = j.grew || g1.goroutines-g0.goroutines > maxGoroutineGrowth
		j.goroutinesKnown = true
	}
	return j, true
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
