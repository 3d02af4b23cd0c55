package mirakl

import (
	"strings"
	"testing"

	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/fakemirakl"
)

// An update changes the fields it names and nothing else: for each field,
// an update of that field alone (with the secret where the endpoint rule
// demands it) on a config whose every field has a value other than its
// default. The secret, which no read returns, is checked by whether the
// endpoint the config names accepts it.
func TestConfigUpdateOfEachFieldKeepsEveryOther(t *testing.T) {
	t.Parallel()
	otherCA, _, err := newTestCA()
	if err != nil {
		t.Fatal(err)
	}
	type config struct {
		clientID, clientSecret string
		tokenURL               func(f fakes) string
		requestTimeout, minTTL int64
		caCert                 func(f fakes) string
		audience               string
	}
	base := config{
		clientID: "base-id", clientSecret: "base-secret",
		tokenURL:       func(f fakes) string { return f.a.TokenURL() },
		requestTimeout: 17, minTTL: 780,
		caCert:   func(f fakes) string { return strings.TrimSpace(f.a.CACertPEM()) },
		audience: "base-company",
	}
	cases := []struct {
		field  string
		update func(f fakes) map[string]any
		want   func(c *config)
	}{
		{"client_id", func(fakes) map[string]any { return map[string]any{"client_id": "new-id"} },
			func(c *config) { c.clientID = "new-id" }},
		{"client_secret", func(fakes) map[string]any { return map[string]any{"client_secret": "new-secret"} },
			func(c *config) { c.clientSecret = "new-secret" }},
		{"token_url", func(f fakes) map[string]any {
			return map[string]any{"token_url": f.b.TokenURL(), "client_secret": "base-secret"}
		}, func(c *config) { c.tokenURL = func(f fakes) string { return f.b.TokenURL() } }},
		{"request_timeout", func(fakes) map[string]any { return map[string]any{"request_timeout": "23s"} },
			func(c *config) { c.requestTimeout = 23 }},
		{"min_ttl", func(fakes) map[string]any { return map[string]any{"min_ttl": "19m"} },
			func(c *config) { c.minTTL = 1140 }},
		// The audience moves no secret: no client_secret needed.
		{"audience", func(fakes) map[string]any { return map[string]any{"audience": "new-company"} },
			func(c *config) { c.audience = "new-company" }},
		{"ca_cert", func(f fakes) map[string]any {
			return map[string]any{"ca_cert": f.a.CACertPEM() + string(otherCA), "client_secret": "base-secret"}
		}, func(c *config) {
			c.caCert = func(f fakes) string { return strings.TrimSpace(f.a.CACertPEM() + string(otherCA)) }
		}},
	}
	for _, tc := range cases {
		t.Run(tc.field, func(t *testing.T) {
			t.Parallel()
			env := newTestEnv(t)
			want := base
			tc.want(&want)
			f := fakes{a: startTLSFake(t, "a-", want.audience), b: startTLSFake(t, "b-", want.audience)}
			resp, err := env.WriteConfig(map[string]any{
				"client_id": base.clientID, "client_secret": base.clientSecret, "token_url": base.tokenURL(f),
				"request_timeout": base.requestTimeout, "min_ttl": base.minTTL, "ca_cert": base.caCert(f), "verify": false,
				"audience": base.audience,
			})
			requireOK(t, resp, err)

			update := tc.update(f)
			update["verify"] = false
			resp, err = env.WriteConfig(update)
			requireOK(t, resp, err)

			resp, err = env.ReadConfig()
			requireOK(t, resp, err)
			requireData(t, "the config after an update of "+tc.field, resp.Data, map[string]any{
				"client_id": want.clientID, "token_url": want.tokenURL(f),
				"request_timeout": want.requestTimeout, "min_ttl": want.minTTL, "ca_cert": want.caCert(f),
				"audience": want.audience,
			})

			// The endpoint the config names takes only the credentials it
			// should now hold; the other one takes none.
			for _, fake := range []*fakemirakl.Server{f.a, f.b} {
				fake.SetCredentials(want.clientID, "not-this-one")
			}
			endpoint := f.a
			if want.tokenURL(f) == f.b.TokenURL() {
				endpoint = f.b
			}
			endpoint.SetCredentials(want.clientID, want.clientSecret)
			_, token := env.MustReadToken()
			if prefix := map[*fakemirakl.Server]string{f.a: "a-", f.b: "b-"}[endpoint]; !strings.HasPrefix(token, prefix) {
				t.Fatalf("token %q from the wrong endpoint", token)
			}
			if audience, _ := endpoint.AudienceOf(token); audience != want.audience {
				t.Fatalf("token issued for audience %q, want %q", audience, want.audience)
			}
		})
	}
}

type fakes struct{ a, b *fakemirakl.Server }

// startTLSFake starts a fake over HTTPS (the httptest certificate, the same
// for every such fake) whose tokens start with prefix, for requests that
// carry audience ("" for none).
func startTLSFake(t *testing.T, prefix, audience string) *fakemirakl.Server {
	t.Helper()
	fake := fakemirakl.NewTLS("nobody-yet", "nothing-yet", fakemirakl.WithTokenPrefix(prefix), fakemirakl.WithAudiences(audience))
	t.Cleanup(fake.Close)
	t.Cleanup(func() { requireNoViolations(t, fake) })
	return fake
}
