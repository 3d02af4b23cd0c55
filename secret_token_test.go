package mirakl

import (
	"strings"
	"testing"
)

func TestRevokeEvictsCachedToken(t *testing.T) {
	env := newTestEnv(t)
	env.Configure(map[string]any{"verify": false})
	resp, first := env.MustReadToken()

	revoked, err := env.RevokeLease(resp)
	requireOK(t, revoked, err)
	if _, second := env.MustReadToken(); second == first {
		t.Fatal("the next read after a revoke reused the revoked token")
	}
}

func TestRevokeOfOlderTokenKeepsCurrent(t *testing.T) {
	env := newTestEnv(t)
	env.Configure(map[string]any{"verify": false})
	old, _ := env.MustReadToken()
	env.backend.tokens.reset() // force a different current token
	_, current := env.MustReadToken()

	revoked, err := env.RevokeLease(old)
	requireOK(t, revoked, err)
	if _, again := env.MustReadToken(); again != current {
		t.Fatal("revoking an older lease evicted the current token")
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
