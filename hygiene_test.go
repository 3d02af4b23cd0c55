package mirakl

import (
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/fakemirakl"
)

// TestSecretHygiene runs a whole session (config, reads, every failure class)
// with a distinctive secret and distinctive tokens, and proves that neither
// appears in the plugin's trace-level logs, any error or warning, any config
// read, or any lease's stored data.
func TestSecretHygiene(t *testing.T) {
	env := newTestEnv(t)
	var seen []string // every error, warning and non-token response body
	record := func(resp *logical.Response, err error) {
		if err != nil {
			seen = append(seen, err.Error())
		}
		if resp != nil {
			seen = append(seen, resp.Warnings...)
			if resp.IsError() {
				seen = append(seen, resp.Error().Error())
			}
			if resp.Secret != nil {
				seen = append(seen, serialized(t, &logical.Response{Secret: resp.Secret}))
			}
		}
	}

	// A refused write, then a good one.
	record(env.WriteConfig(map[string]any{"client_id": testClientID, "client_secret": testClientSecret + "-wrong", "token_url": env.fake.TokenURL()}))
	env.Configure(map[string]any{"request_timeout": "3s"})
	record(env.ReadConfig())
	resp, _ := env.MustReadToken()
	record(&logical.Response{Secret: resp.Secret}, nil)

	// Every failure class, on reads that must fetch.
	faults := []fakemirakl.Fault{
		fakemirakl.HTMLError(503),
		fakemirakl.RateLimited("1"),
		fakemirakl.RateLimited("600"),
		fakemirakl.ConnectionReset(),
		fakemirakl.Slow(4 * time.Second),
		fakemirakl.HTMLError(200),
		fakemirakl.Oversized(1 << 20),
		fakemirakl.OAuthError(401, "invalid_client", "bad secret "+testClientSecret), // a server that echoes the secret
		fakemirakl.RawToken(`{"token_type":"Bearer","access_token":"` + testTokenPrefix + `raw","expires_in":0}`),
		fakemirakl.RawToken(`{"token_type":"MAC","access_token":"` + testTokenPrefix + `mac","expires_in":60}`),
		fakemirakl.Fault{Status: 500, Body: "echo client_secret=" + testClientSecret, ContentType: "text/plain"},
		// Answers cut short by a proxy: the token is there, but no token can be read.
		fakemirakl.RawToken(`{"token_type":"Bearer","access_token":"` + testTokenPrefix + `cut","expires_in":35`),
		fakemirakl.Fault{Status: 200, Body: "token_type=bearer&access_token=" + testTokenPrefix + "form%zz", ContentType: "application/x-www-form-urlencoded"},
	}
	for _, fault := range faults {
		env.fake.FailRandomly(1, fault)
		env.clock.Advance(time.Hour) // the cached token is gone: every read fetches
		record(env.ReadToken(nil))
		record(env.WriteConfig(map[string]any{"min_ttl": "10m"})) // also clears the refusal hold
	}
	env.fake.FailRandomly(0, fakemirakl.Fault{})
	env.clock.Advance(time.Hour)
	resp, _ = env.MustReadToken()
	record(env.RenewLease(resp))
	record(env.RevokeLease(resp))
	record(env.DeleteConfig())

	if len(seen) < len(faults) {
		t.Fatalf("the scenario produced only %d messages", len(seen))
	}
	logs := env.logs.String()
	if !strings.Contains(logs, "token request to Mirakl failed") {
		t.Fatalf("trace logs did not capture the failures; logs:\n%s", logs)
	}
	issued := append(env.fake.IssuedTokens(), testTokenPrefix)
	if len(issued) < 2 {
		t.Fatalf("the fake issued %d tokens", len(issued))
	}
	for _, needle := range append(issued, testClientSecret) {
		if strings.Contains(logs, needle) {
			t.Errorf("logs contain %q", needle)
		}
		for _, msg := range seen {
			if strings.Contains(msg, needle) {
				t.Errorf("a message contains %q: %s", needle, msg)
			}
		}
	}
}
