package mirakl

import (
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/fakemirakl"
)

func TestConfigCreateReadHidesSecret(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	env.Configure(map[string]any{"min_ttl": "15m", "request_timeout": "20s"})

	resp, err := env.ReadConfig()
	requireOK(t, resp, err)
	// Every field but client_secret.
	requireData(t, "config read", resp.Data, map[string]any{
		"client_id":       testClientID,
		"token_url":       env.fake.TokenURL(),
		"request_timeout": int64(20),
		"min_ttl":         int64(900),
		"ca_cert":         "",
		"audience":        "",
	})
	if strings.Contains(serialized(t, resp), testClientSecret) {
		t.Fatal("the client secret appears in the serialized config read")
	}
}

func TestConfigDefaults(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	resp, err := env.WriteConfig(map[string]any{"client_id": "id", "client_secret": "secret", "verify": false})
	requireOK(t, resp, err)
	resp, err = env.ReadConfig()
	requireOK(t, resp, err)
	requireData(t, "config read", resp.Data, map[string]any{
		"client_id": "id", "token_url": defaultTokenURL, "request_timeout": int64(30), "min_ttl": int64(600), "ca_cert": "", "audience": "",
	})
	if env.fake.Requests() != 0 {
		t.Fatal("verify=false still called Mirakl")
	}
}

func TestConfigUpdateChangesOnlyNamedFields(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	env.Configure(map[string]any{"min_ttl": "15m"})

	resp, err := env.WriteConfig(map[string]any{"request_timeout": "5s"})
	requireOK(t, resp, err)

	resp, err = env.ReadConfig()
	requireOK(t, resp, err)
	requireData(t, "config read after the update", resp.Data, map[string]any{
		"client_id": testClientID, "token_url": env.fake.TokenURL(), "request_timeout": int64(5), "min_ttl": int64(900), "ca_cert": "", "audience": "",
	})
	stored, err := readConfig(env.ctx, env.storage)
	if err != nil || stored.ClientSecret != testClientSecret {
		t.Fatalf("update lost the secret: %v", err)
	}
}

func TestConfigCreateRequiresCredentials(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	resp, err := env.WriteConfig(map[string]any{"client_id": testClientID})
	requireUserError(t, resp, err, "client_secret is required")
	resp, err = env.WriteConfig(map[string]any{"client_secret": testClientSecret})
	requireUserError(t, resp, err, "client_id is required")
	if cfg, _ := readConfig(env.ctx, env.storage); cfg != nil {
		t.Fatal("an invalid create stored a config")
	}
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	tlsFake := fakemirakl.NewTLS(testClientID, testClientSecret)
	tlsFake.Close()
	aCertificate := tlsFake.CACertPEM()
	cases := []struct {
		name  string
		field string
		value any
		want  string
	}{
		{"empty client id", "client_id", "  ", "client_id is required"},
		{"empty secret", "client_secret", "", "client_secret is required"},
		{"relative url", "token_url", "/oauth/token", "not an absolute URL"},
		{"plain http remote", "token_url", "http://auth.mirakl.net/oauth/token", "must use https"},
		{"other scheme", "token_url", "ftp://auth.mirakl.net/oauth/token", "must be an https URL"},
		{"credentials in url", "token_url", "https://user:pw@auth.mirakl.net/oauth/token", "must not carry credentials"},
		{"no host", "token_url", "https:///oauth/token", "not an absolute URL"},
		{"zero timeout", "request_timeout", "0s", "request_timeout must be a positive duration"},
		{"endless timeout", "request_timeout", "2562047h", "request_timeout must be a positive duration of at most 5m0s"},
		{"negative timeout", "request_timeout", "-5s", `"request_timeout": cannot provide negative value`},
		{"negative min_ttl", "min_ttl", "-1m", `"min_ttl": cannot provide negative value`},
		{"unparsable min_ttl", "min_ttl", "soon", "min_ttl"},
		{"unparsable timeout", "request_timeout", "fast", "request_timeout"},
		{"bad pem", "ca_cert", "not a certificate", "ca_cert must be one or more PEM certificates"},
		{"wrong pem type", "ca_cert", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "only CERTIFICATE blocks"},
		{"unparsable second certificate", "ca_cert", aCertificate + "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "ca_cert certificate 2 cannot be parsed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := newTestEnv(t)
			env.Configure(nil)
			before, _ := env.storage.Get(env.ctx, configStorageKey)

			resp, err := env.WriteConfig(map[string]any{tc.field: tc.value})
			requireStatus(t, resp, err, http.StatusBadRequest, tc.want)

			after, _ := env.storage.Get(env.ctx, configStorageKey)
			if string(before.Value) != string(after.Value) {
				t.Fatal("a rejected write changed the stored config")
			}
			if strings.Contains(serialized(t, resp), testClientSecret) || (err != nil && strings.Contains(err.Error(), testClientSecret)) {
				t.Fatal("the error echoes the client secret")
			}
		})
	}
}

func TestConfigLoopbackHTTPAccepted(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"http://127.0.0.1:1/oauth/token", "http://127.8.9.10/x", "http://[::1]:8080/t", "http://localhost/t"} {
		if problem := validateTokenURL(u); problem != "" {
			t.Errorf("%s refused: %s", u, problem)
		}
	}
}

func TestConfigVerifyRefusedStoresNothing(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	resp, err := env.WriteConfig(map[string]any{"client_id": testClientID, "client_secret": "wrong-secret", "token_url": env.fake.TokenURL()})
	requireStatus(t, resp, err, http.StatusBadRequest, `Mirakl refused the credentials: HTTP 401, error "invalid_client"`)
	if cfg, _ := readConfig(env.ctx, env.storage); cfg != nil {
		t.Fatal("refused credentials were stored")
	}
	if strings.Contains(resp.Error().Error(), "wrong-secret") {
		t.Fatal("the error echoes the secret")
	}

	// The same write with verify=false is stored, unchecked.
	resp, err = env.WriteConfig(map[string]any{"client_id": testClientID, "client_secret": "wrong-secret", "token_url": env.fake.TokenURL(), "verify": false})
	requireOK(t, resp, err)
	if cfg, _ := readConfig(env.ctx, env.storage); cfg == nil {
		t.Fatal("verify=false did not store the config")
	}
}

func TestConfigVerifyUnreachableIs502(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	env.fake.Enqueue(fakemirakl.HTMLError(503), fakemirakl.HTMLError(503), fakemirakl.HTMLError(503), fakemirakl.HTMLError(503), fakemirakl.HTMLError(503))
	resp, err := env.WriteConfig(map[string]any{"client_id": testClientID, "client_secret": testClientSecret, "token_url": env.fake.TokenURL()})
	requireStatus(t, resp, err, http.StatusBadGateway, "verify=false")
	if cfg, _ := readConfig(env.ctx, env.storage); cfg != nil {
		t.Fatal("an unverified config was stored")
	}
}

func TestConfigVerifySeedsCache(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	env.Configure(nil)
	if got := env.fake.Stats().Issued; got != 1 {
		t.Fatalf("verification issued %d tokens, want 1", got)
	}
	env.MustReadToken()
	if got := env.fake.Requests(); got != 1 {
		t.Fatalf("the first read after a verified write called Mirakl again (%d requests)", got)
	}
}

func TestConfigChangeFlushesToken(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	env.Configure(map[string]any{"verify": false})
	_, first := env.MustReadToken()

	resp, err := env.WriteConfig(map[string]any{"min_ttl": "5m", "verify": false})
	requireOK(t, resp, err)
	_, second := env.MustReadToken()
	if first == second {
		t.Fatal("a config change kept the old token")
	}
}

func TestConfigDelete(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	env.Configure(nil)
	env.MustReadToken()

	resp, err := env.DeleteConfig()
	requireOK(t, resp, err)
	resp, err = env.ReadConfig()
	if err != nil || resp != nil {
		t.Fatalf("config still readable after delete: %#v %v", resp, err)
	}
	resp, err = env.ReadToken(nil)
	requireStatus(t, resp, err, http.StatusBadRequest, "vault write mirakl/config client_id=")
}

func TestConfigSealWrapped(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	paths := env.backend.SpecialPaths()
	if paths == nil || !slices.Equal(paths.SealWrapStorage, []string{"config", "token", "tokens/"}) {
		t.Fatalf("config and tokens are not seal-wrapped: %#v", paths)
	}
	field := pathConfig(env.backend).Fields["client_secret"]
	if field.DisplayAttrs == nil || !field.DisplayAttrs.Sensitive {
		t.Fatal("client_secret is not marked sensitive")
	}
}

// Whoever may update the config but was never given the secret cannot send
// the stored secret to an endpoint, or through a CA, of their choosing.
func TestConfigMovingTheEndpointRequiresTheSecret(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		update func(elsewhere *fakemirakl.Server) map[string]any
	}{
		{"token_url", func(elsewhere *fakemirakl.Server) map[string]any {
			return map[string]any{"token_url": elsewhere.TokenURL()}
		}},
		{"token_url without verify", func(elsewhere *fakemirakl.Server) map[string]any {
			return map[string]any{"token_url": elsewhere.TokenURL(), "verify": false}
		}},
		{"ca_cert", func(elsewhere *fakemirakl.Server) map[string]any {
			return map[string]any{"ca_cert": elsewhere.CACertPEM()}
		}},
		{"both", func(elsewhere *fakemirakl.Server) map[string]any {
			return map[string]any{"token_url": elsewhere.TokenURL(), "ca_cert": elsewhere.CACertPEM(), "verify": false}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			elsewhere := fakemirakl.NewTLS(testClientID, testClientSecret)
			t.Cleanup(elsewhere.Close)
			t.Cleanup(func() { requireNoViolations(t, elsewhere) })
			update := tc.update(elsewhere)
			env := newTestEnv(t)
			env.Configure(nil)
			before, _ := env.storage.Get(env.ctx, configStorageKey)

			resp, err := env.WriteConfig(update)
			requireStatus(t, resp, err, http.StatusBadRequest, "changing token_url or ca_cert requires client_secret in the same write")
			after, _ := env.storage.Get(env.ctx, configStorageKey)
			if string(before.Value) != string(after.Value) {
				t.Fatal("the refused write changed the stored config")
			}
			env.clock.Advance(time.Hour)
			env.MustReadToken()
			if got := elsewhere.Requests(); got != 0 {
				t.Fatalf("the other endpoint received %d requests", got)
			}

			withSecret := map[string]any{"client_secret": testClientSecret}
			maps.Copy(withSecret, update)
			if _, moves := update["token_url"]; !moves {
				withSecret["token_url"] = elsewhere.TokenURL()
			}
			withSecret["ca_cert"] = elsewhere.CACertPEM()
			resp, err = env.WriteConfig(withSecret)
			requireOK(t, resp, err)
		})
	}

	t.Run("other fields", func(t *testing.T) {
		t.Parallel()
		env := newTestEnv(t)
		env.Configure(nil)
		resp, err := env.WriteConfig(map[string]any{"min_ttl": "5m", "request_timeout": "10s", "client_id": testClientID, "token_url": env.fake.TokenURL()})
		requireOK(t, resp, err)
	})
}

// A refused update changes nothing, in storage or in memory: the cached token
// and the stored config's min_ttl and credentials keep serving.
func TestConfigRefusedUpdateKeepsServingOldConfig(t *testing.T) {
	t.Parallel()
	t.Run("Mirakl refuses the credentials", func(t *testing.T) {
		t.Parallel()
		env := newTestEnv(t)
		env.Configure(nil)
		_, first := env.MustReadToken()

		resp, err := env.WriteConfig(map[string]any{"client_secret": "wrong-secret", "min_ttl": "50m"})
		requireStatus(t, resp, err, http.StatusBadRequest, "nothing was stored")
		requireServesOldConfig(t, env, first)
		if got := env.fake.Stats().Refused; got != 1 {
			t.Fatalf("the refused secret was sent %d times", got)
		}
	})
	t.Run("storage refuses the write", func(t *testing.T) {
		t.Parallel()
		env := newTestEnv(t)
		env.Configure(nil)
		_, first := env.MustReadToken()

		env.storage.FailPut(true)
		resp, err := env.WriteConfig(map[string]any{"client_secret": testClientSecret, "min_ttl": "50m"})
		env.storage.FailPut(false)
		if err == nil || !strings.Contains(err.Error(), "storing config") || resp != nil {
			t.Fatalf("want the storage error, got %#v, %v", resp, err)
		}
		requireServesOldConfig(t, env, first)
	})
}

// requireServesOldConfig checks that the mount still serves first, the token
// of a config with the default min_ttl (10m) and valid credentials.
func requireServesOldConfig(t *testing.T, env *testEnv, first string) {
	t.Helper()
	requests := env.fake.Requests()
	// 34m59s left: enough for min_ttl 10m, not for 50m (capped at half the
	// token's life, 30m), which would warn.
	env.clock.Advance(25 * time.Minute)
	if resp, tok := env.MustReadToken(); tok != first || len(resp.Warnings) != 0 {
		t.Fatalf("the refused update changed what is served: same token %v, warnings %v", tok == first, resp.Warnings)
	}
	env.settle()
	if got := env.fake.Requests() - requests; got != 0 {
		t.Fatalf("serving the cached token made %d requests", got)
	}
	env.clock.Advance(time.Hour)
	if _, tok := env.MustReadToken(); tok == first {
		t.Fatal("no new token with the stored credentials")
	}
}

// The README's own command, client_secret=- <<<"$SECRET", passes a trailing
// newline; @file often does too.
func TestConfigTrimsTheSecret(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	resp, err := env.WriteConfig(map[string]any{"client_id": testClientID + "\n", "client_secret": testClientSecret + "\n", "token_url": env.fake.TokenURL()})
	requireOK(t, resp, err)
	if stored, _ := readConfig(env.ctx, env.storage); stored.ClientSecret != testClientSecret {
		t.Fatalf("stored secret %q", stored.ClientSecret)
	}
}

// Vault's router asks whether the config exists to tell a create from an
// update, which policies grant separately.
func TestConfigExistence(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	if env.ConfigExists() {
		t.Fatal("a config exists before any write")
	}
	env.Configure(nil)
	if !env.ConfigExists() {
		t.Fatal("no config after a write")
	}
	resp, err := env.DeleteConfig()
	requireOK(t, resp, err)
	if env.ConfigExists() {
		t.Fatal("a config exists after its delete")
	}

	env.storage.FailGet(true)
	if _, _, err := env.backend.HandleExistenceCheck(env.ctx, &logical.Request{Operation: logical.UpdateOperation, Path: "config", Storage: env.storage}); err == nil {
		t.Fatal("an unreadable storage passed for a missing config")
	}
}

// A config change or delete closes the connections of the client it
// replaces: none stays open to an endpoint the mount no longer uses.
func TestConfigChangeClosesOldConnections(t *testing.T) {
	t.Parallel()
	changes := map[string]func(t *testing.T, env *testEnv){
		"rotation": func(t *testing.T, env *testEnv) {
			elsewhere := fakemirakl.New(testClientID, testClientSecret)
			t.Cleanup(elsewhere.Close)
			t.Cleanup(func() { requireNoViolations(t, elsewhere) })
			env.Configure(map[string]any{"token_url": elsewhere.TokenURL(), "verify": false})
		},
		"delete": func(t *testing.T, env *testEnv) {
			resp, err := env.DeleteConfig()
			requireOK(t, resp, err)
		},
	}
	for name, change := range changes {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			env := newTestEnv(t)
			env.Configure(nil)
			env.MustReadToken()
			if got := env.fake.OpenConnections(); got != 1 {
				t.Fatalf("%d connections open to Mirakl, want the one kept alive", got)
			}
			change(t, env)
			waitFor(t, "the old connection to close", func() bool { return env.fake.OpenConnections() == 0 })
		})
	}
}
