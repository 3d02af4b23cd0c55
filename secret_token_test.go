package mirakl

import (
	"strings"
	"testing"
	"time"
)

// A lease ends whenever a reader's Vault token does: that must not cost the
// other readers their token, nor Mirakl a request.
func TestRevokeKeepsCachedToken(t *testing.T) {
	env := newTestEnv(t)
	env.Configure(map[string]any{"verify": false})
	resp, first := env.MustReadToken()

	revoked, err := env.RevokeLease(resp)
	requireOK(t, revoked, err)
	if _, second := env.MustReadToken(); second != first {
		t.Fatal("a revoke dropped the shared token")
	}
	if got := env.fake.Requests(); got != 1 {
		t.Fatalf("the fake saw %d requests, want 1", got)
	}
}

func TestRevokeSucceedsWithoutConfig(t *testing.T) {
	env := newTestEnv(t)
	env.Configure(map[string]any{"verify": false})
	resp, _ := env.MustReadToken()
	if r, err := env.DeleteConfig(); err != nil || (r != nil && r.IsError()) {
		t.Fatalf("delete: %v %v", r, err)
	}
	revoked, err := env.RevokeLease(resp)
	requireOK(t, revoked, err)
}

// A renewal answers with the time the token has left: never more, and an
// error once it has expired.
func TestRenewNeverOutlivesTheToken(t *testing.T) {
	env := newTestEnv(t)
	env.Configure(map[string]any{"verify": false})
	resp, _ := env.MustReadToken()
	if !resp.Secret.Renewable || resp.Secret.TTL != 3599*time.Second || resp.Secret.MaxTTL != resp.Secret.TTL {
		t.Fatalf("lease: renewable %v, TTL %s, max TTL %s", resp.Secret.Renewable, resp.Secret.TTL, resp.Secret.MaxTTL)
	}

	env.clock.Advance(20*time.Minute + 300*time.Millisecond)
	renewed, err := env.RenewLease(resp)
	requireOK(t, renewed, err)
	want := 39*time.Minute + 58*time.Second // 39m58.7s left, never rounded up
	if renewed.Secret.TTL != want || renewed.Secret.MaxTTL != want || len(renewed.Warnings) != 0 {
		t.Fatalf("renewal: TTL %s, max TTL %s, warnings %v; want %s", renewed.Secret.TTL, renewed.Secret.MaxTTL, renewed.Warnings, want)
	}
	if strings.Contains(serialized(t, renewed), testTokenPrefix) {
		t.Fatal("the renewal echoes the token")
	}

	env.clock.Advance(40 * time.Minute)
	renewed, err = env.RenewLease(resp)
	requireUserError(t, renewed, err, "has expired: read mirakl/token for a new token")
	if got := env.fake.Requests(); got != 1 {
		t.Fatalf("renewals made %d requests to Mirakl", got-1)
	}
}

// Leases issued before renewals carry no expiry: they still revoke, and a
// renewal says what to do.
func TestRenewOfOldLease(t *testing.T) {
	env := newTestEnv(t)
	env.Configure(map[string]any{"verify": false})
	resp, _ := env.MustReadToken()
	delete(resp.Secret.InternalData, internalExpiresAt)
	renewed, err := env.RenewLease(resp)
	requireUserError(t, renewed, err, "predates renewable leases")
	revoked, err := env.RevokeLease(resp)
	requireOK(t, revoked, err)
}

// A renewal is a reader still using the token: past the refresh point it
// starts the successor's request, so that Vault Proxy and Agent find a fresh
// token when they read again.
func TestRenewPastRefreshPointFetchesSuccessor(t *testing.T) {
	env := newTestEnv(t)
	env.Configure(map[string]any{"verify": false})
	resp, first := env.MustReadToken()

	env.clock.Advance(40 * time.Minute) // 19m59s left: before the refresh point
	renewed, err := env.RenewLease(resp)
	requireOK(t, renewed, err)
	env.settle()
	if got := env.fake.Requests(); got != 1 {
		t.Fatalf("a renewal before the refresh point made %d requests", got-1)
	}

	env.clock.Advance(9 * time.Minute) // 10m59s left: past it
	renewed, err = env.RenewLease(resp)
	requireOK(t, renewed, err)
	env.settle()
	if _, next := env.MustReadToken(); next == first || env.fake.Requests() != 2 {
		t.Fatalf("the renewal did not fetch the successor (%d requests)", env.fake.Requests())
	}
}
