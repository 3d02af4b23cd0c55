package mirakl

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
)

const (
	// refusalHold is how long reads fail fast after Mirakl refused the
	// credentials, so that a bad secret does not turn every read into a request.
	refusalHold = 30 * time.Second
	// Background attempts after a failure spread out from the first to the
	// last wait, doubling, so that an outage costs Mirakl about one request a
	// minute rather than one per read.
	backgroundRetryFirst = 5 * time.Second
	backgroundRetryLast  = time.Minute
)

// cachedToken is a token with its lifetime placed on the engine's clock.
type cachedToken struct {
	fetchedToken
	issuedAt    time.Time
	expiresAt   time.Time
	fingerprint string
	// The expiry as every read shows it and as every lease keeps it,
	// formatted once rather than per read.
	expiresAtText, expiresAtLease string
	// read: a reader got this token, so its successor is worth fetching
	// ahead of time. A token nobody read is left to expire.
	read atomic.Bool
}

func newCachedToken(f *fetchedToken, now time.Time) *cachedToken {
	expiresAt := now.Add(f.ExpiresIn)
	return &cachedToken{
		fetchedToken:   *f,
		issuedAt:       now,
		expiresAt:      expiresAt,
		fingerprint:    tokenFingerprint(f.AccessToken),
		expiresAtText:  expiresAt.UTC().Format(time.RFC3339),
		expiresAtLease: expiresAt.UTC().Format(time.RFC3339Nano),
	}
}

// markRead notes that a reader got the token; every cached read calls it, so
// it writes only the first time, leaving the shared flag's cache line alone.
func (t *cachedToken) markRead() {
	if !t.read.Load() {
		t.read.Store(true)
	}
}

func (t *cachedToken) remaining(now time.Time) time.Duration { return t.expiresAt.Sub(now) }

func (t *cachedToken) lifetime() time.Duration { return t.expiresAt.Sub(t.issuedAt) }

// servable: a lease must be at least a second long; Vault turns 0 into its default TTL.
func (t *cachedToken) servable(now time.Time) bool { return t.remaining(now) >= time.Second }

// reusableFor caps a wanted remaining life at half the token's lifetime, so
// that no min_ttl, however large, makes more than two requests per lifetime.
func (t *cachedToken) reusableFor(minTTL time.Duration) time.Duration {
	return min(minTTL, t.lifetime()/2)
}

// tokenCache is one config's token and what the engine knows of its requests
// to Mirakl: the last failure, when to try again in the background, and
// whether a refusal holds. A config change replaces the whole cache.
type tokenCache struct {
	mu    sync.Mutex
	token *cachedToken
	// failure is the last request's error while no request has succeeded since.
	failure error
	// failures counts consecutive failed requests; it spaces background attempts.
	failures int
	// nextAttempt is the earliest time of the next background attempt.
	nextAttempt time.Time
	// refusedUntil: while the last failure is a refusal, reads fail fast
	// until then, and background attempts stop until a request succeeds.
	refusedUntil time.Time
	// backgroundRunning: a background refresh is on its way.
	backgroundRunning bool

	flights singleflight.Group
}

// current returns the cached token (nil if none) and the refusal that still
// holds at now, if any.
func (c *tokenCache) current(now time.Time) (*cachedToken, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.refused() && now.Before(c.refusedUntil) {
		return c.token, c.failure
	}
	return c.token, nil
}

// refused: the last request was refused, and none succeeded since. Callers hold mu.
func (c *tokenCache) refused() bool { return errors.Is(c.failure, ErrCredentialsRefused) }

// lastFailure is the error of the last request if none succeeded since.
func (c *tokenCache) lastFailure() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.failure
}

// retryDue reports whether a request may go to Mirakl now for a reader that
// has a servable token: not while an earlier failure's backoff runs.
func (c *tokenCache) retryDue(now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.refused() && !now.Before(c.nextAttempt)
}

// claimBackground marks a background refresh as started, unless one runs,
// the backoff of an earlier failure has not run out, or a refusal stopped them.
func (c *tokenCache) claimBackground(now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.backgroundRunning || c.refused() || now.Before(c.nextAttempt) {
		return false
	}
	c.backgroundRunning = true
	return true
}

func (c *tokenCache) backgroundDone() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.backgroundRunning = false
}

// succeeded installs a fresh token and forgets earlier failures.
func (c *tokenCache) succeeded(t *cachedToken) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.token = t
	c.failure, c.failures, c.nextAttempt = nil, 0, time.Time{}
}

// failed records a failed request and when the background may try again:
// after Mirakl's Retry-After if it sent one, else after a growing backoff.
func (c *tokenCache) failed(err error, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.failure = err
	c.failures++
	wait := jittered(backgroundRetryFirst, backgroundRetryLast, c.failures-1)
	var upstream *UpstreamError
	if errors.As(err, &upstream) && upstream.RetryAfter > wait {
		wait = upstream.RetryAfter
	}
	c.nextAttempt = now.Add(wait)
	if c.refused() {
		c.refusedUntil = now.Add(refusalHold)
	}
}

// cacheStatus is what mirakl/status shows of a cache: nothing secret.
type cacheStatus struct {
	token             *cachedToken
	nextAttempt       time.Time
	refusedUntil      time.Time
	backgroundStopped bool
}

func (c *tokenCache) status() cacheStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	return cacheStatus{
		token:             c.token,
		nextAttempt:       c.nextAttempt,
		refusedUntil:      c.refusedUntil,
		backgroundStopped: c.refused(),
	}
}
