package mirakl

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"golang.org/x/sync/singleflight"
)

// refusalHold is how long reads fail fast after Mirakl refused the
// credentials, so that a bad secret does not turn every read into a request.
const refusalHold = 30 * time.Second

// cachedToken is a token with its lifetime placed on the engine's clock.
type cachedToken struct {
	fetchedToken
	issuedAt    time.Time
	expiresAt   time.Time
	fingerprint string
}

func newCachedToken(f *fetchedToken, now time.Time) *cachedToken {
	return &cachedToken{
		fetchedToken: *f,
		issuedAt:     now,
		expiresAt:    now.Add(f.ExpiresIn),
		fingerprint:  tokenFingerprint(f.AccessToken),
	}
}

func (t *cachedToken) remaining(now time.Time) time.Duration { return t.expiresAt.Sub(now) }

func (t *cachedToken) lifetime() time.Duration { return t.expiresAt.Sub(t.issuedAt) }

// servable: a lease must be at least a second long; Vault turns 0 into its default TTL.
func (t *cachedToken) servable(now time.Time) bool { return t.remaining(now) >= time.Second }

// satisfies reports whether the token may be handed out to a reader asking for minTTL.
func (t *cachedToken) satisfies(now time.Time, minTTL time.Duration) bool {
	if !t.servable(now) {
		return false
	}
	if minTTL > t.lifetime() {
		// No token Mirakl issues can meet it: fetching on every read would not
		// help and would hammer Mirakl, so reuse the token for half its life.
		minTTL = t.lifetime() / 2
	}
	return t.remaining(now) >= minTTL
}

// tokenCache holds one mount's token. A generation number ties each fetch to
// the config it started under, so a fetch that a config change overtook
// cannot install a token of the old credentials.
type tokenCache struct {
	mu           sync.Mutex
	generation   uint64
	token        *cachedToken
	refusal      error
	refusedUntil time.Time
	flights      singleflight.Group
}

func (c *tokenCache) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.generation++
	c.token, c.refusal = nil, nil
}

func (c *tokenCache) seed(t *cachedToken) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.token = t
}

// lookup returns the cached token, the current generation, and the refusal
// that still holds at now, if any.
func (c *tokenCache) lookup(now time.Time) (*cachedToken, uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var refusal error
	if c.refusal != nil && now.Before(c.refusedUntil) {
		refusal = c.refusal
	}
	return c.token, c.generation, refusal
}

func (c *tokenCache) store(generation uint64, t *cachedToken) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if generation == c.generation {
		c.token, c.refusal = t, nil
	}
}

func (c *tokenCache) refuse(generation uint64, err error, until time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if generation == c.generation {
		c.refusal, c.refusedUntil = err, until
	}
}

// evict drops the cached token if it is the one with this fingerprint.
func (c *tokenCache) evict(fingerprint string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.token != nil && c.token.fingerprint == fingerprint {
		c.token = nil
		return true
	}
	return false
}

var errNotConfigured = errors.New("not configured")

// token returns a token for a reader that needs minTTL of life (nil: the
// config's min_ttl), with warnings for the reader. It reuses the cached token
// when it can, and otherwise lets one request per mount go to Mirakl.
func (b *backend) token(ctx context.Context, s logical.Storage, minTTL *time.Duration) (*cachedToken, []string, error) {
	cfg, client, err := b.currentConfig(ctx, s)
	if err != nil {
		return nil, nil, err
	}
	if cfg == nil {
		return nil, nil, errNotConfigured
	}
	need := cfg.MinTTL
	if minTTL != nil {
		need = *minTTL
	}

	now := b.now()
	cached, generation, refusal := b.tokens.lookup(now)
	if cached != nil && cached.satisfies(now, need) {
		return cached, shortLifeWarning(cached, now, need), nil
	}

	var tok *cachedToken
	err = refusal // while a refusal holds, fail fast rather than ask Mirakl again
	if err == nil {
		tok, err = b.refresh(ctx, client, generation, cached, need)
	}
	if err != nil {
		now = b.now()
		if cached != nil && cached.servable(now) {
			warning := fmt.Sprintf("serving the cached token, which has %s left: a new one could not be had (%v)",
				cached.remaining(now).Round(time.Second), err)
			return cached, []string{warning}, nil
		}
		return nil, nil, err
	}
	return tok, shortLifeWarning(tok, b.now(), need), nil
}

// refresh fetches a new token in a flight shared by every concurrent reader of this generation.
func (b *backend) refresh(ctx context.Context, client *tokenClient, generation uint64, seen *cachedToken, need time.Duration) (*cachedToken, error) {
	result, err, _ := b.tokens.flights.Do(strconv.FormatUint(generation, 10), func() (any, error) {
		// A flight that ended just before this one started may already have
		// brought what this reader needs.
		now := b.now()
		if current, _, refusal := b.tokens.lookup(now); refusal != nil {
			return nil, refusal
		} else if current != nil && current != seen && current.satisfies(now, need) {
			return current, nil
		}

		// Readers that gave up must not cancel the request others wait on;
		// request_timeout bounds it.
		fetched, err := client.fetch(context.WithoutCancel(ctx))
		now = b.now()
		if err != nil {
			if errors.Is(err, ErrCredentialsRefused) {
				b.tokens.refuse(generation, err, now.Add(refusalHold))
			}
			b.Logger().Warn("token request to Mirakl failed", "error", err)
			return nil, err
		}
		tok := newCachedToken(fetched, now)
		b.tokens.store(generation, tok)
		b.Logger().Debug("fetched a new token", "fingerprint", tok.fingerprint, "expires_in", fetched.ExpiresIn)
		return tok, nil
	})
	if err != nil {
		return nil, err
	}
	return result.(*cachedToken), nil
}

func shortLifeWarning(t *cachedToken, now time.Time, need time.Duration) []string {
	left := t.remaining(now)
	if left >= need {
		return nil
	}
	return []string{fmt.Sprintf("the token has %s left, less than the min_ttl of %s: Mirakl issues tokens that live %s",
		left.Round(time.Second), need, t.lifetime().Round(time.Second))}
}
