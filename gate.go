package mirakl

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

const (
	// gateFirstWait to gateLastWait: after a failure no request goes to
	// Mirakl for a jittered wait that doubles with each failure in a row, so
	// that an outage costs Mirakl about one request a minute however many
	// read, rather than one per read.
	gateFirstWait = 5 * time.Second
	gateLastWait  = time.Minute
	// refusalHold to refusalLastWait: after Mirakl refused the credentials,
	// the wait starts at 30 seconds and doubles with each refusal in a row up
	// to five minutes. A bad secret must not turn every read into a request;
	// but a refusal holds, it does not stop: background refreshes go on at
	// that pace, so that a token is replaced before it runs out whenever
	// Mirakl recovers from a short refusal (a refresh starts 12 minutes before
	// a default token expires, leaving room for at least two attempts).
	refusalHold     = 30 * time.Second
	refusalLastWait = 5 * time.Minute
	// maxRetryAfter caps the Retry-After the gate honours. Mirakl's tokens
	// live an hour and are refreshed from min_ttl plus two minutes (12
	// minutes by default) before they expire: five minutes leaves room for
	// two more attempts before the cached token runs out, however long a
	// (possibly misconfigured or hostile) endpoint asks us to stay away.
	maxRetryAfter = 5 * time.Minute
)

// requestPurpose is who wants to ask Mirakl: the gate weighs them differently.
type requestPurpose int

const (
	// forReader: a read that found no valid token: it cannot be served
	// without one.
	forReader requestPurpose = iota
	// forFresher: a read that found a valid token with less life than it
	// asked for on its own read (min_ttl): it can be served without one.
	forFresher
	// forBackground: a refresh ahead, from a read, a renewal or the periodic function.
	forBackground
	// forConfigCheck: a config write with verify, an admin asking "try now".
	forConfigCheck
)

// gate is the one decision on whether a request may go to Mirakl now. Every
// request of a mount's state asks it (tokenCache.request) and it answers
// "send" (nil, and whether as a probe) or "fail fast" with the last failure
// and when the next attempt is due. After a failure nothing goes out until
// reopensAt (backoff, Retry-After, refusal hold); a config check passes
// everything but Mirakl's own Retry-After: it is an admin's explicit request,
// one per write. Every deadline follows the one clock rule (clock.go).
type gate struct {
	mu        sync.Mutex
	failure   error     // the last request's failure; nil once one succeeded
	failedAt  time.Time // when it ended
	failures  int       // consecutive failures: they space attempts out
	refusals  int       // consecutive refusals: they space attempts out further
	reopensAt time.Time // no request before then
	// retryAfterUntil is when Mirakl's (capped) Retry-After ends: it holds
	// even for a config check.
	retryAfterUntil time.Time
	// unchangedUntil: Mirakl (or a gateway in front of it) answered with the
	// token already cached; asking again for a token nobody needs yet waits
	// until then.
	unchangedUntil time.Time
	// probing: once a request has failed, one attempt at a time goes out,
	// whichever token it is for; the others wait for its outcome rather than
	// each sending their own when the hold ends (roles share the gate).
	probing bool
	// counted is how many failures the gate has counted since it was made,
	// and attemptsFailed how many attempts within requests failed (a request
	// retrying within itself): a request notes both when it starts, to tell
	// the failures of others that came while it was in flight.
	counted, attemptsFailed uint64
	// attemptErr: before any request has failed, an attempt within one
	// failed and that request retries (at an outage's onset, a blip): until
	// it ends, or attemptUntil at the latest, other tokens' requests wait for
	// its outcome rather than each making attempts of their own.
	attemptErr   error
	attemptAt    time.Time
	attemptUntil time.Time
}

// GateClosedError is a request the gate did not let go to Mirakl. It unwraps
// to the failure that closed the gate, so it maps to the same HTTP status.
type GateClosedError struct {
	Last      error
	LastAt    time.Time
	ReopensAt time.Time
	// Probing: the next attempt is under way, for this token or another of
	// the mount's.
	Probing bool
}

func (e *GateClosedError) Error() string {
	if e.Probing {
		return fmt.Sprintf("%v (last attempt at %s; the next is under way)", e.Last, formatTime(e.LastAt))
	}
	return fmt.Sprintf("%v (last attempt at %s; the next not before %s)", e.Last, formatTime(e.LastAt), formatTime(e.ReopensAt))
}

func (e *GateClosedError) Unwrap() error { return e.Last }

// errNothingNew holds back a request for a token that nobody needs yet,
// after Mirakl answered the last one with the token already cached.
var errNothingNew = errors.New("Mirakl answered the last request with the token already cached")

// admit answers whether a request for purpose may go to Mirakl at now, and
// if so whether as a probe: once a request has failed, each admitted attempt
// is one HTTP request, without the in-request retries meant for blips, so
// that an outage costs Mirakl the gate's schedule and not a multiple of it.
// One probe at a time: took says the request is the gate's probe, which the
// caller ends with probeEnded whatever its outcome. A config check is never
// the probe and never waits for one.
func (g *gate) admit(now time.Time, purpose requestPurpose) (probe, took bool, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	probe = g.failure != nil
	switch {
	case (purpose == forBackground || purpose == forFresher) && !passed(now, g.unchangedUntil):
		return false, false, errNothingNew
	case g.failure == nil && g.attemptErr != nil && !passed(now, g.attemptUntil) && purpose != forConfigCheck:
		return false, false, &GateClosedError{Last: g.attemptErr, LastAt: g.attemptAt, Probing: true}
	case g.failure == nil:
		return false, false, nil
	case purpose == forConfigCheck:
		if !passed(now, g.retryAfterUntil) {
			return false, false, g.closedLocked(g.retryAfterUntil)
		}
		return probe, false, nil
	case !passed(now, g.reopensAt):
		return false, false, g.closedLocked(g.reopensAt)
	case g.probing:
		err := g.closedLocked(g.reopensAt)
		err.Probing = true
		return false, false, err
	}
	g.probing = true
	return probe, true, nil
}

// probeEnded: the probe admit let out has ended, however.
func (g *gate) probeEnded() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.probing = false
}

// generation is what a request notes when it starts (failed, failedSince).
type generation struct{ counted, attemptsFailed uint64 }

func (g *gate) generation() generation {
	g.mu.Lock()
	defer g.mu.Unlock()
	return generation{g.counted, g.attemptsFailed}
}

// attemptFailed: an attempt within a request failed with err at now, and the
// request retries, until at the latest.
func (g *gate) attemptFailed(err error, now, until time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.attemptsFailed++
	if g.failure == nil && (g.attemptErr == nil || passed(now, g.attemptUntil)) {
		g.attemptErr, g.attemptAt, g.attemptUntil = err, now, until
	}
}

// attemptsEnded: the request that noted gen ended (however): if its attempt
// was the one holding the others back, it no longer is.
func (g *gate) attemptsEnded(at time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.attemptAt.Equal(at) {
		g.attemptErr = nil
	}
}

// failedSince: another request (or an attempt of another, which has failed
// ownAttempts of its own since) has failed since a request noted gen: that
// request stops retrying within itself. At an outage's onset one request
// retries, as a blip deserves; the others in flight make one attempt each.
func (g *gate) failedSince(gen generation, ownAttempts uint64) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return (g.failure != nil && g.counted > gen.counted) || g.attemptsFailed-ownAttempts > gen.attemptsFailed
}

func (g *gate) closedLocked(reopensAt time.Time) *GateClosedError {
	return &GateClosedError{Last: g.failure, LastAt: g.failedAt, ReopensAt: reopensAt}
}

func (g *gate) refusedLocked() bool { return errors.Is(g.failure, ErrCredentialsRefused) }

// succeeded opens the gate.
func (g *gate) succeeded() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.openLocked()
	g.unchangedUntil = time.Time{}
}

// openLocked forgets the failures: a request succeeded.
func (g *gate) openLocked() {
	g.attemptErr = nil
	g.failure, g.failedAt, g.failures, g.refusals, g.reopensAt, g.retryAfterUntil = nil, time.Time{}, 0, 0, time.Time{}, time.Time{}
}

// answeredUnchanged opens the gate for readers and holds back requests that
// nobody waits for, after Mirakl answered with the token already cached,
// which has left: asking again before half of that has passed would only
// bring the same token again (a gateway that caches tokens does this until
// the token expires).
func (g *gate) answeredUnchanged(now time.Time, left time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.openLocked()
	g.unchangedUntil = now.Add(max(left/2, gateFirstWait))
}

// failed closes the gate after a request that noted gen when it started
// failed at now: for a jittered, growing backoff (a longer one after a
// refusal), and at least Mirakl's Retry-After (capped). Requests that were in
// flight together when the first of them failed (several roles at an
// outage's onset) are one attempt: only the first counts towards the backoff.
func (g *gate) failed(err error, gen generation, now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.failure != nil && g.counted > gen.counted {
		return
	}
	g.counted++
	g.attemptErr = nil
	refusals := g.refusals
	g.failure, g.failedAt = err, now
	g.failures++
	wait := jittered(gateFirstWait, gateLastWait, g.failures-1)
	g.refusals = 0
	if g.refusedLocked() {
		g.refusals = refusals + 1
		wait = max(jittered(refusalHold, refusalLastWait, g.refusals-1), refusalHold)
	}
	var upstream *UpstreamError
	if errors.As(err, &upstream) && upstream.RetryAfter > 0 {
		asked := min(upstream.RetryAfter, maxRetryAfter)
		g.retryAfterUntil = laterHold(now, g.retryAfterUntil, now.Add(asked))
		wait = max(wait, asked)
	}
	// A check passes a closed gate (an admin's "try now"): its failure adds
	// to the hold, it never shortens a refusal's or a Retry-After.
	g.reopensAt = laterHold(now, g.reopensAt, now.Add(wait))
}

// inherit carries what another gate of the same endpoint learnt over to g:
// an outage or Mirakl's Retry-After does not end because the config was
// rewritten (the new config's gate takes the old one's), nor because a
// rewrite's check failed (the config in use takes the check's). It only ever
// adds to g's holds: a gate that has no failure on record (a check refused
// for its audience alone) lifts none of g's, and of two holds the one with
// more left at now stays. A refusal concerned the other gate's credentials:
// it is carried over only if they are the same.
func (g *gate) inherit(other *gate, sameCredentials bool, now time.Time) {
	other.mu.Lock()
	failure, failedAt, failures, refusals, reopensAt, retryAfterUntil := other.failure, other.failedAt, other.failures, other.refusals, other.reopensAt, other.retryAfterUntil
	refused := other.refusedLocked()
	other.mu.Unlock()
	if failure == nil || (refused && !sameCredentials) {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	// The other's failure is g's own carried over, or a check's since: the
	// latest news of the endpoint.
	g.failure, g.failedAt, g.refusals = failure, failedAt, refusals
	g.failures = max(g.failures, failures)
	g.reopensAt = laterHold(now, g.reopensAt, reopensAt)
	g.retryAfterUntil = laterHold(now, g.retryAfterUntil, retryAfterUntil)
}

// laterHold is whichever of two holds has more left at now, by the one clock
// rule: a failure or a carried-over hold adds to a hold, never lifts one.
func laterHold(now, held, next time.Time) time.Time {
	if timeLeft(now, next) > timeLeft(now, held) {
		return next
	}
	return held
}

// lastFailure is the last request's error if none succeeded since.
func (g *gate) lastFailure() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.failure
}

// gateStatus is what mirakl/status and mirakl/metrics show of the gate:
// nothing secret. Requests are held while reopensAt has not passed (it is
// zero after a success).
type gateStatus struct {
	reopensAt time.Time
	refused   bool
}

func (g *gate) status() gateStatus {
	g.mu.Lock()
	defer g.mu.Unlock()
	return gateStatus{reopensAt: g.reopensAt, refused: g.refusedLocked()}
}

// heldAt: requests are held back at now.
func (s gateStatus) heldAt(now time.Time) bool {
	return !s.reopensAt.IsZero() && !passed(now, s.reopensAt)
}
