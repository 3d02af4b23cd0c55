package mirakl

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// defaultRole names the default token (mirakl/token) wherever a role's name
// goes: in status, in the metrics' role label (Prometheus reads an empty
// label as none) and in the code. Role names cannot be empty.
const defaultRole = ""

// tokenSource is a token for one audience: the default token (mirakl/token,
// with the config's audience) or a role's (mirakl/token/:name, with the
// role's). Everything a token has lives here once, for both: the cache with
// its one flight and its own hold (token_cache.go), the entry kept in storage
// (token_store.go), what status and metrics show of it. Every path that
// hands out, refreshes, renews, stores or shows a token goes through one.
type tokenSource struct {
	role     string // defaultRole for mirakl/token
	audience string // sent with every request when not empty
	minTTL   time.Duration
	cache    *tokenCache

	// restorePending: the stored token has not been looked for yet, or
	// storage could not be read: the next use looks again.
	restorePending atomic.Bool

	// retired: a config or role change replaced this source; set under
	// tokenStore.mu before the change drops the stored entry, so that none of
	// its tokens is stored after that.
	retired atomic.Bool
	// stored is the token this process last wrote or loaded (nil: none),
	// and storedRead the read flag it was stored with; under tokenStore.mu.
	stored     *cachedToken
	storedRead bool

	metrics *roleMetrics // metrics.go: its series, labelled with its role
}

func (b *backend) newTokenSource(mount *mountState, role, audience string, minTTL time.Duration) *tokenSource {
	src := &tokenSource{
		role:     role,
		audience: audience,
		minTTL:   minTTL,
		cache:    newTokenCache(b.alive, &mount.gate, audience),
		metrics:  b.metrics.forRole(role),
	}
	src.restorePending.Store(true)
	return src
}

// storageKey is where the source's token is kept (seal-wrapped).
func (s *tokenSource) storageKey() string {
	if s.role == defaultRole {
		return tokenStorageKey
	}
	return roleTokenStoragePrefix + s.role
}

// close ends the source's requests.
func (s *tokenSource) close() { s.cache.close() }

// closeIfIdle closes the source if nothing keeps it in memory at now: no valid token, no
// request in flight, no hold to remember. Closing it then is safe: a reader
// that still holds it is sent to a new one (tokenFor).
func (s *tokenSource) closeIfIdle(now time.Time) bool {
	c := s.cache
	if c.hold.status().heldAt(now) {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.flight != nil || (c.token != nil && c.token.servable(now)) {
		return false
	}
	c.closed = true
	c.cancel()
	return true
}

// errRoleNotFound: a read or renewal named a role that does not exist.
var errRoleNotFound = errors.New("no such role")

// roles is a mount state's roles in memory: those read, renewed or written
// since it loaded, until they go idle. A role that nobody reads costs
// nothing here; the periodic function's work grows with these only.
type roles struct {
	loaded sync.Map // name -> *tokenSource; lock-free for cached reads
	// loads serialises loading a role from storage, so that one load builds
	// one source.
	loads sync.Mutex
	// restored: the periodic function has loaded the roles whose tokens
	// are stored (token_store.go).
	restored atomic.Bool
}

func (r *roles) get(name string) *tokenSource {
	if src, ok := r.loaded.Load(name); ok {
		return src.(*tokenSource)
	}
	return nil
}

func (r *roles) each(f func(*tokenSource)) {
	r.loaded.Range(func(_, v any) bool {
		f(v.(*tokenSource))
		return true
	})
}

// sourceFor is the source that serves role now, if in memory.
func (m *mountState) sourceFor(role string) *tokenSource {
	if role == defaultRole {
		return m.defaultToken
	}
	return m.roles.get(role)
}

// eachSource calls f for the default token and every role in memory.
func (m *mountState) eachSource(f func(*tokenSource)) {
	f(m.defaultToken)
	m.roles.each(f)
}

// source returns the source that serves role, loading the role and its
// stored token from storage on first use, on the mount's context (as
// currentMount does). It fails with errRoleNotFound for a role that does not
// exist.
func (b *backend) source(s logical.Storage, mount *mountState, role string) (*tokenSource, error) {
	src := mount.sourceFor(role)
	if src != nil && !src.restorePending.Load() {
		return src, nil
	}
	if role == defaultRole {
		return src, nil // currentMount restores it
	}
	mount.roles.loads.Lock()
	defer mount.roles.loads.Unlock()
	if b.alive.Err() != nil {
		return nil, errMountClosed
	}
	ctx, cancel := context.WithTimeout(b.alive, mountLoadTimeout)
	defer cancel()
	src = mount.roles.get(role)
	if src == nil {
		r, err := readRole(ctx, s, role)
		if err != nil {
			return nil, err
		}
		if r == nil {
			return nil, errRoleNotFound
		}
		src = b.newTokenSource(mount, role, r.Audience, r.minTTL(mount.config))
		mount.roles.loaded.Store(role, src)
	}
	if src.restorePending.Load() && b.restoreToken(ctx, s, mount, src) { // token_store.go
		src.restorePending.Store(false)
	}
	return src, nil
}

// dropRole forgets role's source (a role write, delete or invalidation) and
// ends its requests.
func (m *mountState) dropRole(role string) {
	if src, ok := m.roles.loaded.LoadAndDelete(role); ok {
		src.(*tokenSource).close()
	}
}

// forgetIdleRoles closes and forgets the roles with nothing to keep, so that
// the periodic function's work and the memory follow the roles in use.
func (m *mountState) forgetIdleRoles(now time.Time) {
	m.roles.loaded.Range(func(k, v any) bool {
		if src := v.(*tokenSource); src.closeIfIdle(now) {
			m.roles.loaded.CompareAndDelete(k, v)
		}
		return true
	})
}
