package mirakl

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// cachedToken is a token with its lifetime placed on the engine's clock.
type cachedToken struct {
	fetchedToken
	issuedAt    time.Time
	expiresAt   time.Time
	fingerprint string
	// The expiry as every read shows it and as every lease keeps it, and
	// the lifetime as a lease keeps it: made once rather than per read.
	expiresAtText, expiresAtLease string
	lifetimeLease                 any
	// read: a reader got this token, so its successor is worth fetching
	// ahead of time. A token nobody read is left to expire.
	read atomic.Bool
}

func newCachedToken(f *fetchedToken, now time.Time) *cachedToken {
	return placedToken(f, now, f.ExpiresIn, f.ExpiresIn)
}

// placedToken places on the clock a token that has left of its life at now,
// and was issued with lifetime.
func placedToken(f *fetchedToken, now time.Time, left, lifetime time.Duration) *cachedToken {
	expiresAt := now.Add(left)
	return &cachedToken{
		fetchedToken:   *f,
		issuedAt:       expiresAt.Add(-lifetime),
		expiresAt:      expiresAt,
		fingerprint:    tokenFingerprint(f.AccessToken),
		expiresAtText:  expiresAt.UTC().Format(time.RFC3339),
		expiresAtLease: expiresAt.UTC().Format(time.RFC3339Nano),
		lifetimeLease:  int64(lifetime.Seconds()),
	}
}

// answeredAgain is t as Mirakl answered it again at now: the same token
// keeps the lifetime it was issued with (a gateway counting expires_in down
// would otherwise make it look ever shorter-lived, and its successor due at
// once), and the earlier of the two expiries.
func (t *cachedToken) answeredAgain(f *fetchedToken, now time.Time) *cachedToken {
	if t.remaining(now) <= f.ExpiresIn {
		return t
	}
	again := placedToken(f, now, f.ExpiresIn, t.lifetime())
	again.read.Store(t.read.Load())
	return again
}

// markRead notes that a reader got the token; every cached read calls it, so
// it writes only the first time, leaving the shared flag's cache line alone.
func (t *cachedToken) markRead() {
	if !t.read.Load() {
		t.read.Store(true)
	}
}

// remaining is what is left of the token's life by the one clock rule
// (clock.go): it is alive only while both clocks say so.
func (t *cachedToken) remaining(now time.Time) time.Duration { return timeLeft(now, t.expiresAt) }

func (t *cachedToken) lifetime() time.Duration { return t.expiresAt.Sub(t.issuedAt) }

// servable: a lease must be at least a second long (Vault turns 0 into its
// default TTL), and rounds down to whole seconds; a second more is the margin
// for the time a read takes.
func (t *cachedToken) servable(now time.Time) bool { return t.remaining(now) >= 2*time.Second }

// reusableFor caps a wanted remaining life at half the token's lifetime, so
// that no min_ttl, however large, makes more than two requests per lifetime.
func (t *cachedToken) reusableFor(minTTL time.Duration) time.Duration {
	return min(minTTL, t.lifetime()/2)
}

// tokenCache is one audience's token and its requests to Mirakl: the one
// request in flight that every caller shares, and the two gates each request
// passes: the mount's, shared by every audience of one endpoint and
// credentials, and its own hold, for what Mirakl said of this audience only.
// It owns its requests: close cancels them and waits for them.
type tokenCache struct {
	// shared is the mount's gate (mountState.gate): an outage, a 429 or a
	// refused client closes it for every audience.
	shared *gate
	// hold is this audience's own: a refusal that concerns the audience it
	// sent (a company that withdrew its consent), and Mirakl answering with
	// the token already cached.
	hold gate
	// audience is what the requests send: a refusal concerns it only if
	// one was sent.
	audience string

	// ctx is what requests run on: not any reader's, so that one reader
	// giving up does not fail the others.
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	token   *cachedToken
	flight  *flight
	closed  bool
	running sync.WaitGroup
}

// flight is one request to Mirakl, shared by every caller that wants a token
// while it runs.
type flight struct {
	done  chan struct{}
	token *cachedToken
	err   error
}

// errStateClosed: the config was replaced or deleted, or the mount went away.
var errStateClosed = errors.New("the configuration changed during the read")

func newTokenCache(parent context.Context, shared *gate, audience string) *tokenCache {
	c := &tokenCache{shared: shared, audience: audience}
	c.ctx, c.cancel = context.WithCancel(parent)
	return c
}

// current is the cached token, nil if none.
func (c *tokenCache) current() *cachedToken {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.token
}

// install makes t the cached token and opens both gates.
func (c *tokenCache) install(t *cachedToken) {
	c.mu.Lock()
	c.token = t
	c.mu.Unlock()
	c.shared.succeeded()
	c.hold.succeeded()
}

// restore makes t, a token kept in storage, the cached token. It says
// nothing of Mirakl now: neither gate changes (an outage, a Retry-After or
// a refusal hold goes on for the mount and for this audience).
func (c *tokenCache) restore(t *cachedToken) {
	c.mu.Lock()
	c.token = t
	c.mu.Unlock()
}

// answeredUnchanged makes t, Mirakl's answer with the token already cached,
// the cached token, and tells the gate that nothing new came.
func (c *tokenCache) answeredUnchanged(t *cachedToken, now time.Time) {
	c.mu.Lock()
	c.token = t
	c.mu.Unlock()
	c.shared.succeeded()
	c.hold.answeredUnchanged(now, t.remaining(now))
}

// failed tells the gate that the failure concerns: this audience's hold for
// an OAuth error to a request that carried an audience (except
// invalid_client, which is about the client), the mount's for everything
// else (no answer, 5xx, 429, an invalid answer, a refused client). An outage
// then costs Mirakl the mount's schedule however many audiences are read, and
// a company that withdrew its consent holds back only its own requests.
// gen is what a request notes of both gates when it starts.
type gen struct{ shared, own generation }

func (c *tokenCache) generation() gen { return gen{c.shared.generation(), c.hold.generation()} }

func (c *tokenCache) failed(err error, started gen, now time.Time) {
	if concernsAudience(err, c.audience) {
		c.hold.failed(err, started.own, now)
		return
	}
	c.shared.failed(err, started.shared, now)
}

// retryHooks are what a request started at started tells the mount's gate
// of its attempts (client.go): each failed attempt it retries, and whether
// another request has failed since it started, which ends its retries.
// now is the engine's clock, and timeout the request's bound; ended is to be
// called when the request has ended, however.
func (c *tokenCache) retryHooks(started gen, now func() time.Time, timeout time.Duration) (hooks retryHooks, ended func()) {
	var own uint64 // attempts of this request: checkRetry runs on its goroutine
	var firstAt time.Time
	hooks = retryHooks{
		failedAttempt: func(err error) {
			at := now()
			if own == 0 {
				firstAt = at
			}
			own++
			c.shared.attemptFailed(err, at, at.Add(timeout))
		},
		stop: func() bool { return c.shared.failedSince(started.shared, own) },
	}
	return hooks, func() {
		if own > 0 {
			c.shared.attemptsEnded(firstAt)
		}
	}
}

// concernsAudience: err is Mirakl refusing a request that carried audience,
// for a reason other than the client itself.
func concernsAudience(err error, audience string) bool {
	var upstream *UpstreamError
	return audience != "" && errors.As(err, &upstream) && errors.Is(upstream, ErrCredentialsRefused) &&
		upstream.OAuthCode != oauthInvalidClient
}

// lastFailure is what keeps this audience from a new token, if anything:
// its own refusal first, else the mount's.
func (c *tokenCache) lastFailure() error {
	if err := c.hold.lastFailure(); err != nil {
		return err
	}
	return c.shared.lastFailure()
}

// gateStatus is the hold that applies to this audience now: the later of
// the two gates'.
func (c *tokenCache) gateStatus(now time.Time) gateStatus {
	shared, own := c.shared.status(), c.hold.status()
	switch {
	case !own.heldAt(now):
		return shared
	case !shared.heldAt(now):
		return own
	case own.reopensAt.After(shared.reopensAt):
		return own
	}
	return shared
}

// sendFunc is one exchange with Mirakl on the cache's context; probe: one
// HTTP request, no in-request retries (the gate says when).
type sendFunc func(ctx context.Context, probe bool) (*cachedToken, error)

// request joins the request in flight or, if the gate lets one go out now
// for purpose, starts send as the new one; started says which. It is the
// only way to Mirakl.
func (c *tokenCache) request(now time.Time, purpose requestPurpose, send sendFunc) (f *flight, started bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, false, errStateClosed
	}
	if c.flight != nil {
		return c.flight, false, nil
	}
	probe, tookShared, err := c.shared.admit(now, purpose)
	if err != nil {
		return nil, false, err
	}
	ownProbe, tookOwn, err := c.hold.admit(now, purpose)
	if err != nil {
		if tookShared {
			c.shared.probeEnded()
		}
		return nil, false, err
	}
	probe = probe || ownProbe
	f = &flight{done: make(chan struct{})}
	c.flight = f
	c.running.Add(1)
	go func() {
		defer c.running.Done()
		f.token, f.err = send(c.ctx, probe)
		if tookShared {
			c.shared.probeEnded()
		}
		if tookOwn {
			c.hold.probeEnded()
		}
		c.mu.Lock()
		c.flight = nil
		c.mu.Unlock()
		close(f.done)
	}()
	return f, true, nil
}

// close cancels the requests this cache started and waits until they ended,
// so that none goes on with a secret that was replaced or deleted.
func (c *tokenCache) close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.cancel()
	c.running.Wait()
}
