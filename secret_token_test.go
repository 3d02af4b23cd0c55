package mirakl

import (
	"strings"
	"testing"
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

func TestRenewRefused(t *testing.T) {
	env := newTestEnv(t)
	env.Configure(map[string]any{"verify": false})
	resp, _ := env.MustReadToken()
	renewed, err := env.RenewLease(resp)
	requireUserError(t, renewed, err, "cannot be renewed")
	if strings.Contains(serialized(t, renewed), testTokenPrefix) {
		t.Fatal("the renew error echoes the token")
	}
}
