package mirakl

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/fakemirakl"
)

// hygieneSecret has every character that a form, a URL, JSON or HTML encodes,
// around a marker that survives any escaping: a logger that quotes the
// secret (hclog writes config="...\"<HYGIENE> x...") still shows the marker.
const (
	hygieneMarker = "HYGIENE"
	hygieneSecret = `s3cr3t+/=&%"<` + hygieneMarker + `> x`
)

// TestSecretHygiene runs a whole session (config, reads, status, every failure
// class, an upstream that echoes the request in every encoding, a restart
// that loads the config from storage) with a distinctive secret and
// distinctive tokens, and proves that neither appears, in any spelling, in
// the plugin's trace-level logs, any error or warning, any response body but
// the token read's own access_token, or any lease's data.
func TestSecretHygiene(t *testing.T) {
	t.Parallel()
	fake := fakemirakl.New(testClientID, hygieneSecret, fakemirakl.WithTokenPrefix(testTokenPrefix))
	t.Cleanup(fake.Close)
	env := newTestEnvWithFake(t, fake)
	// seenByWriters: answers to writes that sent the secret themselves,
	// which may repeat Mirakl's error_description (in the encodings an
	// echoing server chose) to the one who knows the secret anyway.
	var seen, seenByWriters []string
	record := func(resp *logical.Response, err error) {
		seen = append(seen, visibleTexts(resp, err, true)...)
	}
	configure := func(extra map[string]any) {
		data := map[string]any{"client_id": testClientID, "client_secret": hygieneSecret, "token_url": fake.TokenURL(), "request_timeout": "1s"}
		for k, v := range extra {
			data[k] = v
		}
		before := len(seen)
		record(env.WriteConfig(data))
		seenByWriters = append(seenByWriters, seen[before:]...)
		seen = seen[:before]
	}

	configure(map[string]any{"client_secret": hygieneSecret + "-wrong"}) // refused
	configure(nil)
	record(env.ReadConfig())
	record(env.ReadToken(nil))

	echo := func(status int, contentType string, spell func(string) string) fakemirakl.Fault {
		return fakemirakl.Fault{Status: status, ContentType: contentType, Echo: spell}
	}
	form := func(body string) string { return body }
	decoded := func(body string) string { v, _ := url.QueryUnescape(body); return v }
	jsonOf := func(body string) string {
		raw, _ := json.Marshal(map[string]string{"error": "invalid_request", "error_description": "got " + decoded(body), "request": body})
		return string(raw)
	}
	faults := []fakemirakl.Fault{
		fakemirakl.HTMLError(503),
		fakemirakl.RateLimited("1"),
		fakemirakl.RateLimited("600"),
		fakemirakl.ConnectionReset(),
		fakemirakl.HTMLError(200),
		fakemirakl.Oversized(1 << 20),
		fakemirakl.Redirect(307, "http://127.0.0.1:1/elsewhere?secret="+url.QueryEscape(hygieneSecret)),
		fakemirakl.OAuthError(401, "invalid_client", "bad secret "+hygieneSecret),
		fakemirakl.OAuthError(401, "invalid_client "+url.QueryEscape(hygieneSecret), "bad secret "+url.PathEscape(hygieneSecret)),
		fakemirakl.RawToken(`{"token_type":"Bearer","access_token":"` + testTokenPrefix + `raw","expires_in":0}`),
		fakemirakl.RawToken(`{"token_type":"` + testTokenPrefix + `mac","access_token":"` + testTokenPrefix + `mac","expires_in":60}`),
		fakemirakl.RawToken(`{"token_type":"Bearer","accessToken":"` + testTokenPrefix + `camel"}`),
		fakemirakl.RawToken(`<token><access_token>` + testTokenPrefix + `xml</access_token></token>`),
		fakemirakl.RawToken(`{"token_type":"Bearer","access_token":"` + testTokenPrefix + `cut","expires_in":35`),
		// Servers and proxies that echo the request.
		echo(500, "text/plain", form),
		echo(400, "application/x-www-form-urlencoded", form),
		echo(400, "application/json", jsonOf),
		echo(401, "application/json", jsonOf),
		echo(200, "application/json", jsonOf),
		echo(502, "text/html", func(body string) string { return "<pre>" + decoded(body) + "</pre>" }),
	}
	for _, fault := range faults {
		fake.FailRandomly(1, fault)
		env.clock.Advance(time.Hour) // the cached token is gone: every read fetches
		record(env.ReadToken(nil))
		record(env.ReadToken(map[string]any{"min_ttl": "1s"}))
		record(env.request(logical.ReadOperation, "status", nil))
		configure(nil)                                                             // verify fails the same way
		record(env.WriteConfig(map[string]any{"min_ttl": "10m", "verify": false})) // also clears the refusal hold
	}
	// A Mirakl that never answers: each read waits out request_timeout, so
	// one read is enough.
	fake.FailRandomly(1, fakemirakl.Slow(time.Minute))
	env.clock.Advance(time.Hour)
	record(env.ReadToken(nil))

	fake.FailRandomly(0, fakemirakl.Fault{})
	env.clock.Advance(time.Hour)
	resp, err := env.ReadToken(nil)
	requireOK(t, resp, err)
	record(resp, err)
	record(env.RenewLease(resp))
	record(env.RevokeLease(resp))
	// Background refreshes and their failures.
	fake.FailRandomly(1, echo(503, "text/plain", form))
	env.clock.Advance(55 * time.Minute)
	record(env.ReadToken(nil))
	env.settle()
	record(env.ReadToken(nil))
	record(env.request(logical.ReadOperation, "status", nil))

	// A restart: the config comes from storage.
	restarted, err := newBackend(context.Background(), &logical.BackendConfig{
		StorageView: env.storage,
		Logger:      hclog.New(&hclog.LoggerOptions{Level: hclog.Trace, Output: env.logs}),
		System:      logical.TestSystemView(),
	}, env.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cleanupWithin(t, restarted) })
	fake.FailRandomly(0, fakemirakl.Fault{})
	for _, path := range []string{"config", "token", "status"} {
		record(restarted.HandleRequest(env.ctx, &logical.Request{Operation: logical.ReadOperation, Path: path, Storage: env.storage, MountPoint: "mirakl/"}))
	}
	record(env.DeleteConfig())

	if len(seen) < 3*len(faults) || len(seenByWriters) < len(faults) {
		t.Fatalf("the scenario produced only %d messages", len(seen))
	}
	logs := env.logs.String()
	if !strings.Contains(logs, "token request to Mirakl failed") || !strings.Contains(logs, "[TRACE]") && !strings.Contains(logs, "[DEBUG]") {
		t.Fatalf("the logs did not capture the failures; logs:\n%s", logs)
	}
	issued := fake.IssuedTokens()
	if len(issued) < 3 {
		t.Fatalf("the fake issued %d tokens", len(issued))
	}
	needles := append(issued, testTokenPrefix)
	for _, needle := range append(needles, hygieneSecret) {
		for _, msg := range seenByWriters {
			if strings.Contains(msg, needle) {
				t.Errorf("an answer to a writer contains %q: %s", needle, msg)
			}
		}
	}
	needles = append(needles, secretSpellings(hygieneSecret)...)
	needles = append(needles, hygieneMarker)
	for _, needle := range needles {
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
