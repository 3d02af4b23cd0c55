package mirakl

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/fakemirakl"
)

// A lease ends whenever a reader's Vault token does: that must not cost the
// other readers their token, nor Mirakl a request.
func TestRevokeKeepsCachedToken(t *testing.T) {
	t.Parallel()
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
	t.Parallel()
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
	t.Parallel()
	env := newTestEnv(t)
	env.Configure(map[string]any{"verify": false})
	resp, _ := env.MustReadToken()
	if !resp.Secret.Renewable || resp.Secret.TTL != 3599*time.Second || resp.Secret.MaxTTL != resp.Secret.TTL {
		t.Fatalf("lease: renewable %v, TTL %s, max TTL %s", resp.Secret.Renewable, resp.Secret.TTL, resp.Secret.MaxTTL)
	}

	env.clock.Advance(20*time.Minute + 300*time.Millisecond)
	renewed, err := env.RenewLease(resp)
	requireOK(t, renewed, err)
	want := 39*time.Minute + 57*time.Second // 39m58.7s left, less the renewal margin, never rounded up
	if renewed.Secret.TTL != want || renewed.Secret.MaxTTL != want || len(renewed.Warnings) != 0 {
		t.Fatalf("renewal: TTL %s, max TTL %s, warnings %v; want %s", renewed.Secret.TTL, renewed.Secret.MaxTTL, renewed.Warnings, want)
	}
	if strings.Contains(serialized(t, renewed), testTokenPrefix) {
		t.Fatal("the renewal echoes the token")
	}
	if got := env.fake.Requests(); got != 1 {
		t.Fatalf("a renewal made %d requests to Mirakl", got-1)
	}

	env.clock.Advance(39*time.Minute + 56*time.Second) // 2.7s left: the last whole second before the margin
	renewed, err = env.RenewLease(resp)
	requireOK(t, renewed, err)
	if renewed.Secret.TTL != time.Second || renewed.Secret.MaxTTL != time.Second {
		t.Fatalf("renewal with 2.7s left: TTL %s, max TTL %s; want 1s", renewed.Secret.TTL, renewed.Secret.MaxTTL)
	}

	env.clock.Advance(800 * time.Millisecond) // 1.9s left: no whole second before the margin
	renewed, err = env.RenewLease(resp)
	requireUserError(t, renewed, err, "has expired: read mirakl/token for a new token")
	env.settle()
	if got := env.fake.Requests(); got != 2 {
		t.Fatalf("the fake saw %d requests, want 2: the token and the successor that the renewal past the refresh point asked for", got)
	}
}

// Leases issued before renewals carry no expiry: they still revoke, and a
// renewal says what to do.
func TestRenewOfOldLease(t *testing.T) {
	t.Parallel()
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
	t.Parallel()
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

	env.clock.Advance(7*time.Minute + 59*time.Second) // 12m0s left: on the refresh point (min_ttl + 2m), not past it
	renewed, err = env.RenewLease(resp)
	requireOK(t, renewed, err)
	env.settle()
	if got := env.fake.Requests(); got != 1 {
		t.Fatalf("a renewal on the refresh point made %d requests", got-1)
	}

	env.clock.Advance(time.Second) // 11m59s left: past it
	renewed, err = env.RenewLease(resp)
	requireOK(t, renewed, err)
	env.settle()
	if _, next := env.MustReadToken(); next == first || env.fake.Requests() != 2 {
		t.Fatalf("the renewal did not fetch the successor (%d requests)", env.fake.Requests())
	}
}

// Vault caps a renewal at the lease's issue time plus the max TTL the renewal
// answers with: counted from there, that cap is the token's expiry.
func TestRenewCapIsTheTokensExpiry(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	env.Configure(map[string]any{"verify": false})
	resp, _ := env.MustReadToken()
	resp.Secret.IssueTime = env.clock.Now() // as Vault keeps the lease

	env.clock.Advance(20 * time.Minute)
	renewed, err := env.RenewLease(resp)
	requireOK(t, renewed, err)
	if renewed.Secret.MaxTTL != 3599*time.Second || renewed.Secret.TTL != 39*time.Minute+58*time.Second {
		t.Fatalf("renewal: TTL %s, max TTL %s; want 39m58s (a second short of the token), max TTL 59m59s from the issue time",
			renewed.Secret.TTL, renewed.Secret.MaxTTL)
	}
}

// A renewal follows the one clock rule too: after the wall clock stepped
// back, it is no longer than the token has left by the monotonic clock while
// the token is cached, and never longer than the token's lifetime.
func TestRenewalAfterTheWallClockSteppedBack(t *testing.T) {
	t.Parallel()
	se := newSuspendableEnv(t, fakemirakl.WithExpiresIn(600))
	clock, b := se.clock, se.b
	request := func(req *logical.Request) *logical.Response {
		t.Helper()
		req.Storage, req.MountPoint = se.storage, "mirakl/"
		resp, err := b.HandleRequest(context.Background(), req)
		requireOK(t, resp, err)
		return resp
	}
	request(&logical.Request{Operation: logical.UpdateOperation, Path: "config", Data: map[string]any{"client_id": testClientID, "client_secret": testClientSecret, "token_url": se.fake.TokenURL(), "verify": false}})
	read := request(&logical.Request{Operation: logical.ReadOperation, Path: "token"})
	clock.Advance(time.Minute)
	clock.Suspend(-5 * time.Minute) // the wall clock steps back
	renewed := request(&logical.Request{Operation: logical.RenewOperation, Secret: read.Secret})
	if renewed.Secret.TTL > 540*time.Second {
		t.Fatalf("a lease renewed a minute into a 10m token, after the wall clock stepped back, lasts %s", renewed.Secret.TTL)
	}
	b.InvalidateKey(context.Background(), configStorageKey) // the token is no longer in memory
	renewed = request(&logical.Request{Operation: logical.RenewOperation, Secret: read.Secret})
	if renewed.Secret.TTL > 600*time.Second {
		t.Fatalf("a lease renewed after the wall clock stepped back lasts %s, longer than its token's 10m life", renewed.Secret.TTL)
	}
}
