package mirakl

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/fakemirakl"
)

// These tests go the way Vault goes: through logical.Backend, the interface
// Vault holds, with the names Vault has stored (the storage key, the lease's
// secret type and internal data) written out as literals rather than taken
// from the constants they pin. A renamed constant, or a hook left unwired,
// fails here even where the functions behind them are tested directly.

// readTokenOn reads mount/token from b and returns the response.
func (e *testEnv) readTokenOn(b logical.Backend) *logical.Response {
	e.t.Helper()
	resp, err := b.HandleRequest(e.ctx, &logical.Request{Operation: logical.ReadOperation, Path: "token", Storage: e.storage, MountPoint: "mirakl/"})
	requireOK(e.t, resp, err)
	return resp
}

// Vault calls InvalidateKey on the nodes whose storage changed under them
// (a standby, a performance replica) with the key that changed: "config"
// must drop the node's config and token, any other key nothing.
func TestInvalidateKeyThroughTheFramework(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	env.Configure(map[string]any{"verify": false})
	other := env.newNode()
	first := env.readTokenOn(other).Data["access_token"]

	// The active node rotates the credentials to a new endpoint.
	rotated := fakemirakl.New(testClientID, "rotated-secret", fakemirakl.WithTokenPrefix("rotated-"))
	t.Cleanup(rotated.Close)
	t.Cleanup(func() { requireNoViolations(t, rotated) })
	resp, err := env.WriteConfig(map[string]any{"token_url": rotated.TokenURL(), "client_secret": "rotated-secret", "verify": false})
	requireOK(t, resp, err)

	other.InvalidateKey(env.ctx, "status")
	other.InvalidateKey(env.ctx, "config/")
	if got := env.readTokenOn(other).Data["access_token"]; got != first {
		t.Fatalf("invalidating keys other than config dropped the token: %v", got)
	}
	other.InvalidateKey(env.ctx, "config")
	got, _ := env.readTokenOn(other).Data["access_token"].(string)
	if !strings.HasPrefix(got, "rotated-") {
		t.Fatalf("after InvalidateKey(\"config\") the other node served %q, not a token of the rotated credentials", got)
	}
}

// Vault's rollback manager sends each mount a RollbackOperation about once a
// minute; the framework answers it by calling PeriodicFunc.
func TestRollbackOperationRefreshesAhead(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	env.Configure(map[string]any{"verify": false})
	_, first := env.MustReadToken()
	rollback := func() {
		t.Helper()
		resp, err := env.backend.HandleRequest(env.ctx, &logical.Request{Operation: logical.RollbackOperation, Path: "", Storage: env.storage, MountPoint: "mirakl/"})
		if err != nil || resp != nil {
			t.Fatalf("rollback: %#v, %v", resp, err)
		}
		env.settle()
	}

	env.clock.Advance(47 * time.Minute) // 12m59s left: not yet
	rollback()
	if got := env.fake.Requests(); got != 1 {
		t.Fatalf("a rollback before the refresh point made %d requests", got-1)
	}
	env.clock.Advance(time.Minute) // 11m59s left: past min_ttl + 2m
	rollback()
	if got := env.fake.Requests(); got != 2 {
		t.Fatalf("the rollback past the refresh point made %d requests, want 1", got-1)
	}
	if _, tok := env.MustReadToken(); tok == first {
		t.Fatal("the rollback did not replace the token")
	}
}

// Vault calls Cleanup when it unmounts, reloads or stops the plugin: a
// background request still waiting on Mirakl ends with the mount, and none
// starts afterwards.
func TestCleanupThroughTheFrameworkEndsBackgroundRequests(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	env.Configure(map[string]any{"verify": false, "request_timeout": "5m"})
	env.MustReadToken()
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	env.fake.FailRandomly(1, fakemirakl.Hang(release))

	env.clock.Advance(48*time.Minute + 30*time.Second) // in the refresh window, above min_ttl
	env.readWithin("a read of the cached token")
	waitSeenAt(t, env.fake, "the background request to reach Mirakl", func(r []fakemirakl.Request) bool { return len(r) == 2 })

	var mount logical.Backend = env.backend
	cleanupWithin(t, mount)
	waitSeenAt(t, env.fake, "the background request to be cancelled with the mount", func(r []fakemirakl.Request) bool {
		return len(r) > 1 && r[1].Done && r[1].ClientGone
	})
	// Vault routes nothing to an ended mount; a read that raced with the
	// end gets an error at once, and starts nothing.
	after := receive(t, "a read after Cleanup", env.readAsync(env.ctx))
	if after.err == nil || !strings.Contains(after.err.Error(), "unmounted or reloaded") {
		t.Fatalf("a read after Cleanup: %v, %v", after.resp, after.err)
	}
	if got := env.fake.Requests(); got != 2 {
		t.Fatalf("a read after Cleanup started %d background requests", got-2)
	}
}

// The lease as Vault stored it when the token was read: renewals and
// revocations come back with this secret type and internal data, written
// by whichever version of the plugin issued the lease.
func TestRenewAndRevokeTheLeaseAsVaultStoredIt(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	env.Configure(map[string]any{"verify": false})
	resp, token := env.MustReadToken()
	stored := map[string]any{
		"secret_type":            "mirakl_token",
		"token_fingerprint":      tokenFingerprint(token),
		"token_expires_at":       "2026-11-28T11:59:59Z", // the test clock's start plus Mirakl's 3599s
		"token_lifetime_seconds": int64(3599),
	}
	requireData(t, "the lease's internal data", resp.Secret.InternalData, stored)
	// Vault keeps it as JSON: the number comes back a float64.
	stored["token_lifetime_seconds"] = float64(3599)
	// A lease from an earlier version has no lifetime, and renews all the same.
	earlier := maps.Clone(stored)
	delete(earlier, "token_lifetime_seconds")

	lease := func(internal map[string]any) *logical.Secret {
		return &logical.Secret{
			LeaseOptions: logical.LeaseOptions{TTL: 3599 * time.Second, MaxTTL: 3599 * time.Second, Renewable: true},
			InternalData: maps.Clone(internal),
			LeaseID:      "mirakl/token/lease-as-stored",
		}
	}
	handle := func(op logical.Operation, secret *logical.Secret) (*logical.Response, error) {
		return env.backend.HandleRequest(env.ctx, &logical.Request{Operation: op, Secret: secret, Storage: env.storage, MountPoint: "mirakl/"})
	}

	env.clock.Advance(20 * time.Minute)
	for _, internal := range []map[string]any{stored, earlier} {
		renewed, err := handle(logical.RenewOperation, lease(internal))
		requireOK(t, renewed, err)
		if want := 39*time.Minute + 58*time.Second; renewed == nil || renewed.Secret.TTL != want {
			t.Fatalf("renewal of the stored lease %v: %#v, want TTL %s", internal, renewed, want)
		}
	}
	revoked, err := handle(logical.RevokeOperation, lease(stored))
	requireOK(t, revoked, err)

	// The framework refuses a type the backend does not know: what a
	// renamed secret type would do to every lease already issued.
	other := maps.Clone(stored)
	other["secret_type"] = "mirakl_access_token"
	for _, op := range []logical.Operation{logical.RenewOperation, logical.RevokeOperation} {
		if _, err := handle(op, lease(other)); err == nil || !strings.Contains(err.Error(), "secret is unsupported") {
			t.Fatalf("%s of a lease of an unknown type: %v", op, err)
		}
	}
}

// The config as storage holds it: under "config", with these JSON names and
// request_timeout and min_ttl in nanoseconds. Configs stored by earlier
// versions must keep reading; a renamed key or tag would lose them.
func TestConfigAsStorageHoldsIt(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	ca := fakemirakl.NewTLS(testClientID, testClientSecret)
	ca.Close()
	env.Configure(map[string]any{"request_timeout": "20s", "min_ttl": "15m", "ca_cert": ca.CACertPEM()})

	keys, err := env.storage.List(env.ctx, "")
	if err != nil || !slices.Equal(keys, []string{"config", "token"}) {
		t.Fatalf("storage keys %v (%v), want config and the token kept beside it", keys, err)
	}
	entry, err := env.storage.Get(env.ctx, "config")
	if err != nil || entry == nil {
		t.Fatalf("no config entry: %v", err)
	}
	var raw map[string]any
	if err := json.Unmarshal(entry.Value, &raw); err != nil {
		t.Fatal(err)
	}
	requireData(t, "the stored config", raw, map[string]any{
		"client_id":       testClientID,
		"client_secret":   testClientSecret,
		"token_url":       env.fake.TokenURL(),
		"request_timeout": float64(20 * time.Second),
		"min_ttl":         float64(15 * time.Minute),
		"ca_cert":         strings.TrimSpace(ca.CACertPEM()),
	})
	if paths := env.backend.SpecialPaths(); paths == nil || !slices.Equal(paths.SealWrapStorage, []string{"config", "token", "tokens/"}) {
		t.Fatalf("SealWrapStorage %#v, want the config's and the stored tokens' keys", paths)
	}

	// A config as an earlier version stored it, read by a node that starts.
	old := `{"client_id":"` + testClientID + `","client_secret":"` + testClientSecret + `","token_url":"` + env.fake.TokenURL() +
		`","request_timeout":30000000000,"min_ttl":600000000000}`
	if err := env.storage.Put(env.ctx, &logical.StorageEntry{Key: "config", Value: []byte(old)}); err != nil {
		t.Fatal(err)
	}
	restarted := env.newNode()
	resp, err := restarted.HandleRequest(env.ctx, &logical.Request{Operation: logical.ReadOperation, Path: "config", Storage: env.storage})
	requireOK(t, resp, err)
	requireData(t, "the earlier version's config", resp.Data, map[string]any{
		"client_id": testClientID, "token_url": env.fake.TokenURL(), "request_timeout": int64(30), "min_ttl": int64(600), "ca_cert": "", "audience": "",
	})
	if tok, _ := env.readTokenOn(restarted).Data["access_token"].(string); !strings.HasPrefix(tok, testTokenPrefix) {
		t.Fatalf("no token from the earlier version's config: %q", tok)
	}
}

// waitSeenAt polls the fake's record until cond holds, failing the test
// after waitDeadline with what it waited for.
func waitSeenAt(t *testing.T, fake *fakemirakl.Server, what string, cond func([]fakemirakl.Request) bool) {
	t.Helper()
	deadline := time.Now().Add(waitDeadline)
	for seen := fake.Seen(); len(seen) == 0 || !cond(seen); seen = fake.Seen() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s; the fake saw %+v", waitDeadline, what, seen)
		}
		time.Sleep(time.Millisecond)
	}
}
