package mirakl

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/fakemirakl"
)

// bodyRecorder keeps the raw body of every request before the fake answers.
type bodyRecorder struct {
	next   http.Handler
	bodies chan string
}

func (h *bodyRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(r.Body)
	h.bodies <- string(raw)
	r.Body = io.NopCloser(strings.NewReader(string(raw)))
	h.next.ServeHTTP(w, r)
}

// Without an audience the request is, byte for byte, the three fields Mirakl
// documents; with one, the same and a fourth, audience.
func TestAudienceIsAFourthFieldOnlyWhenSet(t *testing.T) {
	t.Parallel()
	const company = "2f6a3c1e-9b4d-4e7a-8c1f-5d2b7e9a0c3d"
	for _, tc := range []struct{ audience, body string }{
		{"", "client_id=" + testClientID + "&client_secret=" + url.QueryEscape(testClientSecret) + "&grant_type=client_credentials"},
		{company, "audience=" + company + "&client_id=" + testClientID + "&client_secret=" + url.QueryEscape(testClientSecret) + "&grant_type=client_credentials"},
	} {
		t.Run("audience "+tc.audience, func(t *testing.T) {
			t.Parallel()
			env := newTestEnv(t, fakemirakl.WithAudiences(tc.audience))
			recorder := &bodyRecorder{next: env.fake, bodies: make(chan string, 10)}
			config := map[string]any{"token_url": newLoopbackServer(t, recorder) + fakemirakl.TokenPath}
			if tc.audience != "" {
				config["audience"] = tc.audience
			}
			env.Configure(config)
			if got := receive(t, "the config check's request", recorder.bodies); got != tc.body {
				t.Fatalf("request body\n got %s\nwant %s", got, tc.body)
			}
			_, token := env.MustReadToken()
			if audience, _ := env.fake.AudienceOf(token); audience != tc.audience {
				t.Fatalf("the token was issued for audience %q", audience)
			}
		})
	}
}

// Changing the audience needs no secret (it moves none), and drops the
// cached and stored token: the next read gets one for the new audience.
func TestAudienceChangeDropsTheToken(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t, fakemirakl.WithAudiences("", "acme"))
	env.Configure(map[string]any{"verify": false})
	_, before := env.MustReadToken()
	if env.storedToken() == nil {
		t.Fatal("no stored token to drop")
	}
	resp, err := env.request(logical.UpdateOperation, "config", map[string]any{"audience": "acme", "verify": false})
	requireOK(t, resp, err)
	if env.storedToken() != nil {
		t.Fatal("the token of the old audience is still stored")
	}
	_, after := env.MustReadToken()
	if audience, _ := env.fake.AudienceOf(after); after == before || audience != "acme" {
		t.Fatalf("after the change: a new token %v, for audience %q", after != before, audience)
	}
	// A stored token is bound to the audience too: written back under the
	// old audience's config, it is not restored.
	raw := env.rawStoredToken()
	resp, err = env.request(logical.UpdateOperation, "config", map[string]any{"audience": "", "verify": false})
	requireOK(t, resp, err)
	env.putStoredToken(raw)
	env.restart()
	if _, tok := env.MustReadToken(); tok == after {
		t.Fatal("a token stored for audience acme was restored for a config without one")
	}
}

func TestAudienceIsBounded(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	for value, want := range map[string]string{
		strings.Repeat("a", 257):   "audience is longer than 256 bytes",
		"two words":                "audience may hold only printable ASCII characters without spaces",
		"caf\u00e9":                "audience may hold only printable ASCII characters without spaces",
		"line\nbreak":              "audience may hold only printable ASCII characters without spaces",
		strings.Repeat("a", 1<<20): "audience is longer than 256 bytes",
	} {
		resp, err := env.WriteConfig(map[string]any{"client_id": testClientID, "client_secret": testClientSecret, "token_url": env.fake.TokenURL(), "audience": value})
		requireUserError(t, resp, err, want)
	}
	requireRequests(t, env, 0, "after refused writes")
	env.Configure(map[string]any{"audience": "https://miraklconnect.com/" + strings.Repeat("x", 230), "verify": false})
}
