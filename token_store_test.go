package mirakl

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/fakemirakl"
)

// newNode is another backend on the env's storage, clock and logs: the new
// plugin process of a restart, a crash, a reload or an upgrade, or the node
// that a failover makes active.
func (e *testEnv) newNode() *backend {
	e.t.Helper()
	config := logical.TestBackendConfig()
	config.StorageView = e.storage
	config.Logger = hclog.New(&hclog.LoggerOptions{Level: hclog.Trace, Output: e.logs})
	b, err := newBackend(context.Background(), config, e.clock.Now)
	if err != nil {
		e.t.Fatal(err)
	}
	b.retries = e.backend.retries
	e.t.Cleanup(func() { cleanupWithin(e.t, b) })
	return b
}

// restart replaces the mount's backend with a new one on the same storage;
// the old one goes, as the old plugin process does.
func (e *testEnv) restart() {
	e.t.Helper()
	old := e.backend
	e.backend = e.newNode()
	old.Cleanup(context.Background())
}

// runPeriodic is Vault's periodic call, through the framework.
func (e *testEnv) runPeriodic() {
	e.t.Helper()
	if _, err := e.backend.HandleRequest(e.ctx, &logical.Request{Operation: logical.RollbackOperation, Storage: e.storage, MountPoint: "mirakl/"}); err != nil {
		e.t.Fatal(err)
	}
	e.settle()
}

// storedToken is the stored token entry, nil if there is none.
func (e *testEnv) storedToken() *storedTokenEntry {
	e.t.Helper()
	raw, err := e.storage.Get(e.ctx, tokenStorageKey)
	if err != nil {
		e.t.Fatal(err)
	}
	if raw == nil {
		return nil
	}
	var entry storedTokenEntry
	if err := raw.DecodeJSON(&entry); err != nil {
		e.t.Fatalf("the stored token does not decode: %v", err)
	}
	return &entry
}

func (e *testEnv) putStoredToken(value []byte) {
	e.t.Helper()
	if err := e.storage.Put(e.ctx, &logical.StorageEntry{Key: tokenStorageKey, Value: value}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *testEnv) rawStoredToken() []byte {
	e.t.Helper()
	raw, err := e.storage.Get(e.ctx, tokenStorageKey)
	if err != nil || raw == nil {
		e.t.Fatalf("no stored token: %v", err)
	}
	return raw.Value
}

// miraklDown makes every request from now on fail, as Mirakl does in an outage.
func (e *testEnv) miraklDown() {
	e.fake.FailRandomly(1, fakemirakl.HTMLError(http.StatusServiceUnavailable))
}

func requireRequests(t *testing.T, env *testEnv, want int, when string) {
	t.Helper()
	if got := env.fake.Requests(); got != want {
		t.Fatalf("%s: the fake saw %d requests, want %d", when, got, want)
	}
}

// A restart serves the token the old process stored, with the same expiry
// and a lease on what is left of it, and no request to Mirakl (which is down).
// The old process's leases renew against it.
func TestStoredTokenServedAfterRestart(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	env.Configure(nil) // the verification's token is installed, so stored
	first, token := env.MustReadToken()
	if stored := env.storedToken(); stored == nil || stored.AccessToken != token {
		t.Fatalf("the token is not stored: %+v", stored)
	}
	env.miraklDown()
	env.clock.Advance(10 * time.Minute)

	env.restart()
	resp, again := env.MustReadToken()
	if again != token {
		t.Fatalf("after the restart: token %q, want the stored %q", again, token)
	}
	requireRequests(t, env, 1, "after the restart")
	if resp.Data["expires_at"] != first.Data["expires_at"] || resp.Data["expires_in"] != int64(3599-600) {
		t.Fatalf("after the restart: expires_at %v, expires_in %v; before: %v", resp.Data["expires_at"], resp.Data["expires_in"], first.Data["expires_at"])
	}
	if want := (3599 - 600) * time.Second; resp.Secret.TTL != want {
		t.Fatalf("lease %s, want %s", resp.Secret.TTL, want)
	}
	renewed, err := env.RenewLease(first)
	requireOK(t, renewed, err)
	if want := (3599-600)*time.Second - renewMargin; renewed.Secret.TTL != want {
		t.Fatalf("the old lease renewed to %s, want %s", renewed.Secret.TTL, want)
	}

	// And again: a restored token is as durable as a fetched one.
	env.restart()
	if _, again := env.MustReadToken(); again != token {
		t.Fatalf("after a second restart: token %q, want %q", again, token)
	}
	requireRequests(t, env, 1, "after a second restart")
}

// A failover: the node that becomes active serves the token the lost active
// node stored. A standby never writes the token, even if it fetched one.
func TestStoredTokenAcrossNodes(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	env.Configure(map[string]any{"verify": false})
	_, token := env.MustReadToken()
	env.miraklDown()

	env.backend = env.newNode() // the old active node is gone, unannounced
	if _, again := env.MustReadToken(); again != token {
		t.Fatalf("the new active node served %q, want the stored %q", again, token)
	}
	requireRequests(t, env, 1, "after the failover")

	env.fake.FailRandomly(0, fakemirakl.Fault{})
	for _, state := range []consts.ReplicationState{consts.ReplicationPerformanceStandby, consts.ReplicationPerformanceSecondary, consts.ReplicationDRSecondary} {
		node := env.newNode()
		node.System().(*rememberedLocalMount).SystemView.(*logical.StaticSystemView).ReplicationStateVal = state
		if node.writesTokenStorage() {
			t.Fatalf("replication state %v: the node would write the token", state)
		}
		mount, err := node.currentMount(env.ctx, env.storage)
		if err != nil || mount == nil {
			t.Fatalf("loading the mount: %v", err)
		}
		node.forgetToken()
		if _, err := node.fetch(env.ctx, mount, mount.defaultToken, nil, forReader, 0); err != nil {
			t.Fatal(err)
		}
		node.keepTokensStored()
		if stored := env.storedToken(); stored == nil || stored.AccessToken != token {
			t.Fatalf("replication state %v: the node replaced the stored token", state)
		}
	}
	// A local mount on a performance secondary has storage of its own.
	local := env.newNode()
	view := local.System().(*rememberedLocalMount).SystemView.(*logical.StaticSystemView)
	view.ReplicationStateVal, view.LocalMountVal = consts.ReplicationPerformanceSecondary, true
	if !local.writesTokenStorage() {
		t.Fatal("a local mount on a performance secondary does not write its token")
	}
}

// A node whose storage changed under it (a standby, as the active node wrote)
// reloads the stored token with the config when either key is invalidated.
func TestStoredTokenInvalidation(t *testing.T) {
	t.Parallel()
	for _, key := range []string{configStorageKey, tokenStorageKey} {
		t.Run(key, func(t *testing.T) {
			t.Parallel()
			env := newTestEnv(t)
			env.Configure(nil)
			_, token := env.MustReadToken()
			standby := env.backend

			env.backend = env.newNode()                    // the active node, on the same storage
			resp, err := env.WriteConfig(map[string]any{}) // vault write -f: a fresh token
			requireOK(t, resp, err)
			_, fresh := env.MustReadToken()
			if fresh == token {
				t.Fatal("the config write kept the token")
			}
			requests := env.fake.Requests()

			env.backend = standby
			standby.InvalidateKey(env.ctx, "some/other/key")
			if _, got := env.MustReadToken(); got != token {
				t.Fatal("invalidating an unrelated key reloaded the mount")
			}
			standby.InvalidateKey(env.ctx, key)
			if _, got := env.MustReadToken(); got != fresh {
				t.Fatalf("after invalidating %q: token %q, want the stored %q", key, got, fresh)
			}
			requireRequests(t, env, requests, "after the invalidation")
		})
	}
}

// A config write drops the stored token before it changes anything; with
// verify, the token it verified with is stored instead. A delete drops it.
func TestStoredTokenFollowsConfigWrites(t *testing.T) {
	t.Parallel()
	t.Run("write with verify", func(t *testing.T) {
		t.Parallel()
		env := newTestEnv(t)
		env.Configure(nil)
		_, token := env.MustReadToken()
		resp, err := env.WriteConfig(map[string]any{})
		requireOK(t, resp, err)
		stored := env.storedToken()
		if stored == nil || stored.AccessToken == token {
			t.Fatalf("after vault write -f: stored %+v, want the new verified token", stored)
		}
		env.miraklDown()
		env.restart()
		if _, got := env.MustReadToken(); got != stored.AccessToken {
			t.Fatalf("after the restart: %q, want the verified token", got)
		}
		requireRequests(t, env, 2, "after the restart")
	})
	t.Run("write without verify", func(t *testing.T) {
		t.Parallel()
		env := newTestEnv(t)
		env.Configure(nil)
		_, token := env.MustReadToken()
		resp, err := env.WriteConfig(map[string]any{"min_ttl": "5m", "verify": false})
		requireOK(t, resp, err)
		if stored := env.storedToken(); stored != nil {
			t.Fatal("a config write kept the stored token")
		}
		env.restart()
		if _, got := env.MustReadToken(); got == token {
			t.Fatal("a restart after a config write served the old token")
		}
		requireRequests(t, env, 2, "after the restart")
	})
	t.Run("delete", func(t *testing.T) {
		t.Parallel()
		env := newTestEnv(t)
		env.Configure(nil)
		_, token := env.MustReadToken()
		resp, err := env.DeleteConfig()
		requireOK(t, resp, err)
		if stored := env.storedToken(); stored != nil {
			t.Fatal("a config delete kept the stored token")
		}
		env.restart()
		env.Configure(map[string]any{"verify": false}) // the same config again
		if _, got := env.MustReadToken(); got == token {
			t.Fatal("the token of a deleted config was served")
		}
	})
	t.Run("storage refuses the drop", func(t *testing.T) {
		t.Parallel()
		env := newTestEnv(t)
		env.Configure(nil)
		_, token := env.MustReadToken()
		env.storage.FailDelete(true)
		resp, err := env.WriteConfig(map[string]any{"min_ttl": "50m"})
		if err == nil || !strings.Contains(err.Error(), "dropping the stored token") || resp != nil {
			t.Fatalf("want the storage error, got %#v, %v", resp, err)
		}
		resp, err = env.DeleteConfig()
		if err == nil || !strings.Contains(err.Error(), "dropping the stored token") || resp != nil {
			t.Fatalf("want the storage error, got %#v, %v", resp, err)
		}
		env.storage.FailDelete(false)
		// Nothing changed: the old config, its token, in memory and stored.
		if stored := env.storedToken(); stored == nil || stored.AccessToken != token {
			t.Fatalf("the stored token changed: %+v", stored)
		}
		requireServesOldConfig(t, env, token)
	})
	t.Run("a request of the replaced config ends after the write", func(t *testing.T) {
		t.Parallel()
		env := newTestEnv(t)
		env.Configure(map[string]any{"verify": false})
		env.MustReadToken()
		replaced := env.backend.loadedMount()
		resp, err := env.WriteConfig(map[string]any{"verify": false})
		requireOK(t, resp, err)
		// The replaced state's request gets its token now: it is not stored.
		late := newCachedToken(&fetchedToken{AccessToken: testTokenPrefix + "late", TokenType: "Bearer", ExpiresIn: time.Hour}, env.clock.Now())
		replaced.defaultToken.cache.install(late)
		env.backend.tokenInstalled(replaced, replaced.defaultToken, late)
		if stored := env.storedToken(); stored != nil {
			t.Fatalf("the token of a replaced config was stored")
		}
	})
}

// What identifies a config: the fields that decide who issues tokens to
// whom; a salt per entry; never the secret in a form that can be read back.
func TestConfigBinding(t *testing.T) {
	t.Parallel()
	base := miraklConfig{ClientID: "id", ClientSecret: "secret", TokenURL: "https://auth.example/oauth/token", RequestTimeout: time.Second, MinTTL: time.Minute}
	salt := []byte("0123456789abcdef")
	want := configBinding(&base, base.Audience, salt)
	if len(want) != 32 {
		t.Fatalf("binding of %d bytes", len(want))
	}
	for name, change := range map[string]func(c *miraklConfig){
		"client_id":     func(c *miraklConfig) { c.ClientID = "id2" },
		"client_secret": func(c *miraklConfig) { c.ClientSecret = "secret2" },
		"token_url":     func(c *miraklConfig) { c.TokenURL = "https://other.example/oauth/token" },
		"ca_cert":       func(c *miraklConfig) { c.CACert = "pem" },
		// A field boundary moved: the length prefixes tell these apart.
		"client_id and token_url": func(c *miraklConfig) { c.ClientID, c.TokenURL = "idh", "ttps://auth.example/oauth/token" },
	} {
		changed := base
		change(&changed)
		if string(configBinding(&changed, changed.Audience, salt)) == string(want) {
			t.Errorf("changing %s leaves the binding unchanged", name)
		}
	}
	same := base
	same.RequestTimeout, same.MinTTL = time.Minute, time.Hour
	if string(configBinding(&same, same.Audience, salt)) != string(want) {
		t.Error("request_timeout or min_ttl changes the binding")
	}
	if string(configBinding(&base, base.Audience, []byte("fedcba9876543210"))) == string(want) {
		t.Error("the salt does not change the binding")
	}
}

// A stored token is served only if it belongs to the config, has life left
// and reads back whole; any other entry is ignored, logged without its
// content, and replaced by the next token.
func TestStoredTokenIgnored(t *testing.T) {
	t.Parallel()
	reencoded := func(t *testing.T, env *testEnv, change func(e *storedTokenEntry)) []byte {
		entry := env.storedToken()
		change(entry)
		raw, err := logical.StorageEntryJSON(tokenStorageKey, entry)
		if err != nil {
			t.Fatal(err)
		}
		return raw.Value
	}
	cases := []struct {
		name string
		// spoil changes the storage or the clock after the first token is stored.
		spoil func(t *testing.T, env *testEnv)
		log   string
	}{
		{"expired", func(t *testing.T, env *testEnv) { env.clock.Advance(3599*time.Second - 500*time.Millisecond) }, "it has expired"},
		{"not JSON", func(t *testing.T, env *testEnv) {
			env.putStoredToken([]byte(`{"version":1,"access_token":"` + testTokenPrefix))
		}, "unreadable"},
		{"another version", func(t *testing.T, env *testEnv) {
			env.putStoredToken(reencoded(t, env, func(e *storedTokenEntry) { e.Version = 2 }))
		}, "unreadable"},
		{"no access token", func(t *testing.T, env *testEnv) {
			env.putStoredToken(reencoded(t, env, func(e *storedTokenEntry) { e.AccessToken = "" }))
		}, "unreadable"},
		{"not Bearer", func(t *testing.T, env *testEnv) {
			env.putStoredToken(reencoded(t, env, func(e *storedTokenEntry) { e.TokenType = "mac" }))
		}, "unreadable"},
		{"expiry before issue", func(t *testing.T, env *testEnv) {
			env.putStoredToken(reencoded(t, env, func(e *storedTokenEntry) { e.IssuedAt = e.ExpiresAt.Add(time.Second) }))
		}, "unreadable"},
		{"no salt", func(t *testing.T, env *testEnv) {
			env.putStoredToken(reencoded(t, env, func(e *storedTokenEntry) { e.ConfigSalt = nil }))
		}, "unreadable"},
		{"binding tampered", func(t *testing.T, env *testEnv) {
			env.putStoredToken(reencoded(t, env, func(e *storedTokenEntry) { e.ConfigBinding[0] ^= 1 }))
		}, "another config"},
		{"another config", func(t *testing.T, env *testEnv) {
			// The token of the old secret comes back into storage after the
			// secret was rotated (a late write, a restored backup).
			raw := env.rawStoredToken()
			env.fake.SetCredentials(testClientID, testClientSecret+"-rotated")
			resp, err := env.WriteConfig(map[string]any{"client_secret": testClientSecret + "-rotated", "verify": false})
			requireOK(t, resp, err)
			env.putStoredToken(raw)
		}, "another config"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			env := newTestEnv(t)
			env.Configure(map[string]any{"verify": false})
			_, token := env.MustReadToken()
			c.spoil(t, env)

			env.restart()
			_, got := env.MustReadToken()
			if got == token {
				t.Fatalf("the %s stored token was served", c.name)
			}
			requireRequests(t, env, 2, "after the restart")
			logs := env.logs.String()
			if !strings.Contains(logs, "ignoring the stored token: ") || !strings.Contains(logs, c.log) {
				t.Fatalf("the logs do not say the stored token was ignored (%s):\n%s", c.log, logs)
			}
			if strings.Contains(logs, testTokenPrefix) {
				t.Fatalf("the logs show a token:\n%s", logs)
			}
			if stored := env.storedToken(); stored == nil || stored.AccessToken != got {
				t.Fatalf("the ignored entry was not replaced by the new token: %+v", stored)
			}
		})
	}
}

// A storage that refuses the write leaves reads working from memory; the
// periodic function stores the token once storage takes it again.
func TestStoredTokenWriteFailureLeavesReadsWorking(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	env.Configure(map[string]any{"verify": false})
	env.storage.FailPut(true)
	_, token := env.MustReadToken()
	for range 3 {
		if _, again := env.MustReadToken(); again != token {
			t.Fatal("the token was not cached")
		}
	}
	requireRequests(t, env, 1, "with storage refusing writes")
	logs := env.logs.String()
	if !strings.Contains(logs, "could not keep the new token in storage") || strings.Contains(logs, testTokenPrefix) {
		t.Fatalf("the logs do not say, without the token, that it could not be stored:\n%s", logs)
	}
	env.runPeriodic() // storage still refuses: reads go on
	if stored := env.storedToken(); stored != nil {
		t.Fatal("a refused write stored something")
	}

	env.storage.FailPut(false)
	env.runPeriodic()
	if stored := env.storedToken(); stored == nil || stored.AccessToken != token || !stored.Read {
		t.Fatalf("the periodic function did not store the token: %+v", stored)
	}
	env.miraklDown()
	env.restart()
	if _, again := env.MustReadToken(); again != token {
		t.Fatal("the token stored late was not served after the restart")
	}
	requireRequests(t, env, 1, "after the restart")
}

// A token that a reader got is refreshed ahead by the restarted mount, as it
// would have been by the old one; a token nobody read is left to expire.
func TestStoredTokenReadFlagSurvives(t *testing.T) {
	t.Parallel()
	for _, read := range []bool{true, false} {
		env := newTestEnv(t)
		env.Configure(nil) // installed by the write, unread
		if read {
			env.MustReadToken()
		}
		env.runPeriodic() // notes the read in storage, not on the read itself
		if stored := env.storedToken(); stored == nil || stored.Read != read {
			t.Fatalf("read %v: stored %+v", read, stored)
		}
		env.restart()
		env.clock.Advance(48 * time.Minute) // 11m59s left: within min_ttl + 2m
		env.runPeriodic()
		want := 1
		if read {
			want = 2
		}
		requireRequests(t, env, want, "after the periodic call")
	}
}

// Storage is touched when a token is installed or the mount loads, never on
// a cached read; the stored token appears in no response, log or message.
func TestStoredTokenNeverShown(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	env.Configure(nil)
	_, token := env.MustReadToken()
	raw := string(env.rawStoredToken())
	for _, spelling := range secretSpellings(testClientSecret) {
		if strings.Contains(raw, spelling) {
			t.Fatalf("the stored token entry holds the client secret (%q)", spelling)
		}
	}
	env.restart()
	env.MustReadToken()

	env.storage.FailGet(true).FailPut(true).FailDelete(true).FailList(true)
	for range 3 {
		if _, again := env.MustReadToken(); again != token {
			t.Fatal("the restored token was not cached")
		}
	}
	env.storage.FailGet(false).FailPut(false).FailDelete(false).FailList(false)
	config, err := env.ReadConfig()
	requireOK(t, config, err)
	status, err := env.request(logical.ReadOperation, "status", nil)
	requireOK(t, status, err)
	for what, text := range map[string]string{"config read": serialized(t, config), "status": serialized(t, status), "logs": env.logs.String()} {
		if strings.Contains(text, token) || strings.Contains(text, testTokenPrefix) {
			t.Errorf("the %s shows the token: %s", what, text)
		}
	}
}
