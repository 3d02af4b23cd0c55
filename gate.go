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
	// refusalHold is the least wait after Mirakl refused the credentials: a
	// bad secret must not turn every read into a request.
	refusalHold = 30 * time.Second
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
	// forReader: a read that found nothing valid, or less life than it wants.
	forReader requestPurpose = iota
	// forBackground: a refresh ahead, from a read, a renewal or the periodic function.
	forBackground
	// forConfigCheck: a config write with verify, an admin asking "try now".
	forConfigCheck
)

// gate is the one decision on whether a request may go to Mirakl now. Every
// request of a mount's state asks it (tokenCache.request) and it answers
// "send" (nil) or "fail fast" with the last failure and when the next
// attempt is due. After a failure nothing goes out until reopensAt (backoff,
// Retry-After, refusal hold); after a refusal, background refreshes stop until
// a request succeeds. A config check passes everything but Mirakl's own
// Retry-After: it is an admin's explicit request, one per write.
type gate struct {
	mu        sync.Mutex
	failure   error     // the last request's failure; nil once one succeeded
	failedAt  time.Time // when it ended
	failures  int       // consecutive failures: they space attempts out
	reopensAt time.Time // no request before then
	// retryAfterUntil is when Mirakl's (capped) Retry-After ends: it holds
	// even for a config check.
	retryAfterUntil time.Time
}

// GateClosedError is a request the gate did not let go to Mirakl. It unwraps
// to the failure that closed the gate, so it maps to the same HTTP status.
type GateClosedError struct {
	Last      error
	LastAt    time.Time
	ReopensAt time.Time // zero: not before a request succeeds (background after a refusal)
}

func (e *GateClosedError) Error() string {
	next := "the next only after a read or a config write succeeds"
	if !e.ReopensAt.IsZero() {
		next = "the next not before " + formatTime(e.ReopensAt)
	}
	return fmt.Sprintf("%v (last attempt at %s; %s)", e.Last, formatTime(e.LastAt), next)
}

func (e *GateClosedError) Unwrap() error { return e.Last }

// admit answers whether a request for purpose may go to Mirakl at now.
func (g *gate) admit(now time.Time, purpose requestPurpose) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.failure == nil:
		return nil
	case purpose == forConfigCheck:
		if now.Before(g.retryAfterUntil) {
			return g.closedLocked(g.retryAfterUntil)
		}
		return nil
	case purpose == forBackground && g.refusedLocked():
		return g.closedLocked(time.Time{})
	case now.Before(g.reopensAt):
		return g.closedLocked(g.reopensAt)
	}
	return nil
}

func (g *gate) closedLocked(reopensAt time.Time) error {
	return &GateClosedError{Last: g.failure, LastAt: g.failedAt, ReopensAt: reopensAt}
}

func (g *gate) refusedLocked() bool { return errors.Is(g.failure, ErrCredentialsRefused) }

// succeeded opens the gate.
func (g *gate) succeeded() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.failure, g.failedAt, g.failures, g.reopensAt, g.retryAfterUntil = nil, time.Time{}, 0, time.Time{}, time.Time{}
}

// failed closes the gate after a failed request: for a jittered, growing
// backoff, at least Mirakl's Retry-After (capped), at least the refusal hold.
func (g *gate) failed(err error, now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.failure, g.failedAt = err, now
	g.failures++
	wait := jittered(gateFirstWait, gateLastWait, g.failures-1)
	if g.refusedLocked() {
		wait = max(wait, refusalHold)
	}
	var upstream *UpstreamError
	if errors.As(err, &upstream) && upstream.RetryAfter > 0 {
		asked := min(upstream.RetryAfter, maxRetryAfter)
		g.retryAfterUntil = now.Add(asked)
		wait = max(wait, asked)
	}
	g.reopensAt = now.Add(wait)
}

// inherit carries an earlier config's gate over to a new config that sends
// to the same endpoint: an outage or Mirakl's Retry-After does not end
// because the config was rewritten. A refusal concerned the old credentials:
// it is carried over only if they are unchanged.
func (g *gate) inherit(old *gate, sameCredentials bool) {
	old.mu.Lock()
	failure, failedAt, failures, reopensAt, retryAfterUntil := old.failure, old.failedAt, old.failures, old.reopensAt, old.retryAfterUntil
	refused := old.refusedLocked()
	old.mu.Unlock()
	if refused && !sameCredentials {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.failure, g.failedAt, g.failures, g.reopensAt, g.retryAfterUntil = failure, failedAt, failures, reopensAt, retryAfterUntil
}

// lastFailure is the last request's error if none succeeded since.
func (g *gate) lastFailure() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.failure
}

// gateStatus is what mirakl/status and mirakl/metrics show of the gate:
// nothing secret. Requests are held while reopensAt is ahead (it is zero
// after a success); after a refusal, background attempts stop until one.
type gateStatus struct {
	reopensAt time.Time
	refused   bool
}

func (g *gate) status() gateStatus {
	g.mu.Lock()
	defer g.mu.Unlock()
	return gateStatus{reopensAt: g.reopensAt, refused: g.refusedLocked()}
}
