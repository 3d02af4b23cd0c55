package mirakl

import (
	"crypto/tls"
	"encoding/pem"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/fakemirakl"
)

// The fault matrix: each failure alone (the read fails with a clear 502 or
// 400) and followed by a success (the read succeeds after retries, and the
// fake saw the expected number of calls).
func TestFaultMatrix(t *testing.T) {
	cases := []struct {
		name      string
		fault     fakemirakl.Fault
		retried   bool   // a transient failure, retried within request_timeout
		wantError string // when the failure persists
	}{
		{"500", fakemirakl.HTMLError(500), true, "Mirakl token endpoint unavailable: HTTP 500"},
		{"502", fakemirakl.HTMLError(502), true, "unavailable: HTTP 502 (body starts: \"<html>"},
		{"503", fakemirakl.HTMLError(503), true, "unavailable: HTTP 503"},
		{"504", fakemirakl.HTMLError(504), true, "unavailable: HTTP 504"},
		{"429 without Retry-After", fakemirakl.RateLimited(""), true, "unavailable: HTTP 429"},
		{"429 with Retry-After", fakemirakl.RateLimited("0"), true, "unavailable: HTTP 429"},
		{"connection reset", fakemirakl.ConnectionReset(), true, "unavailable"},
		{"slow attempt", fakemirakl.Slow(3 * time.Second), true, "no token within request_timeout (3s)"},
		{"HTML page with 200", fakemirakl.HTMLError(200), false, "not a usable token: HTTP 200"},
		{"oversized body", fakemirakl.Oversized(2 << 20), false, "response body larger than 256 KiB"},
		{"invalid_request", fakemirakl.OAuthError(400, "invalid_request", "bad form"), false, `refused the credentials: HTTP 400, error "invalid_request", bad form`},
		{"unauthorized_client", fakemirakl.OAuthError(403, "unauthorized_client", "disabled"), false, `HTTP 403, error "unauthorized_client"`},
		{"wrong token_type", fakemirakl.RawToken(`{"token_type":"MAC","access_token":"x","expires_in":3599}`), false, `token_type is "MAC" (want Bearer)`},
		{"missing expires_in", fakemirakl.RawToken(`{"token_type":"Bearer","access_token":"x"}`), false, "expires_in is missing"},
		{"negative expires_in", fakemirakl.RawToken(`{"token_type":"bearer","access_token":"x","expires_in":-5}`), false, "expires_in is -5"},
		{"text expires_in", fakemirakl.RawToken(`{"token_type":"Bearer","access_token":"x","expires_in":"soon"}`), false, "not a usable token"},
		{"missing access_token", fakemirakl.RawToken(`{"token_type":"Bearer","expires_in":3599}`), false, "missing access_token"},
	}
	for _, tc := range cases {
		t.Run(tc.name+"/alone", func(t *testing.T) {
			env := newTestEnv(t)
			env.Configure(map[string]any{"verify": false, "request_timeout": "3s"})
			env.fake.FailRandomly(1, tc.fault)
			resp, err := env.ReadToken(nil)
			status := http.StatusBadGateway
			requireStatus(t, resp, err, status, tc.wantError)
			if !tc.retried && env.fake.Requests() != 1 {
				t.Fatalf("a permanent failure was retried: %d requests", env.fake.Requests())
			}
			if tc.retried && env.fake.Requests() < 2 {
				t.Fatalf("a transient failure was not retried: %d requests", env.fake.Requests())
			}
		})
		if !tc.retried {
			continue
		}
		t.Run(tc.name+"/then success", func(t *testing.T) {
			env := newTestEnv(t)
			env.Configure(map[string]any{"verify": false, "request_timeout": "6s"})
			env.fake.Enqueue(tc.fault)
			_, token := env.MustReadToken()
			if !strings.HasPrefix(token, testTokenPrefix) {
				t.Fatalf("token %q", token)
			}
			if got := env.fake.Requests(); got != 2 {
				t.Fatalf("fake saw %d requests, want 2 (one failure, one success)", got)
			}
		})
	}
}

func TestRetryAfterHonoured(t *testing.T) {
	env := newTestEnv(t)
	env.Configure(map[string]any{"verify": false, "request_timeout": "10s"})
	env.fake.Enqueue(fakemirakl.RateLimited("1"))
	env.MustReadToken()
	if got := env.fake.Requests(); got != 2 {
		t.Fatalf("fake saw %d requests, want 2", got)
	}
}

func TestRetryAfterBeyondTimeoutFailsAtOnce(t *testing.T) {
	for _, value := range []string{"120", time.Now().Add(2 * time.Minute).UTC().Format(http.TimeFormat)} {
		env := newTestEnv(t)
		env.Configure(map[string]any{"verify": false, "request_timeout": "10s"})
		env.fake.Enqueue(fakemirakl.RateLimited(value))
		resp, err := env.ReadToken(nil)
		requireStatus(t, resp, err, http.StatusBadGateway, "Mirakl asked to retry after")
		if !strings.Contains(err.Error(), "HTTP 429") {
			t.Fatalf("error does not name the status: %v", err)
		}
		if got := env.fake.Requests(); got != 1 {
			t.Fatalf("Retry-After %q: fake saw %d requests, want 1", value, got)
		}
	}
}

func TestRetryAfterParsing(t *testing.T) {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	cases := map[string]time.Duration{
		"7":                             7 * time.Second,
		"Sat, 28 Nov 2026 12:00:30 GMT": 30 * time.Second,
		"Sat, 28 Nov 2026 11:00:00 GMT": 0,
	}
	for value, want := range cases {
		resp := &http.Response{Header: http.Header{"Retry-After": {value}}}
		got, ok := retryAfter(resp, now)
		if !ok || got != want {
			t.Errorf("Retry-After %q = %s, %v; want %s", value, got, ok, want)
		}
	}
	if _, ok := retryAfter(&http.Response{Header: http.Header{"Retry-After": {"later"}}}, now); ok {
		t.Error("an unparsable Retry-After was accepted")
	}
}

func TestTLSUntrustedThenTrustedWithCACert(t *testing.T) {
	fake := fakemirakl.NewTLS(testClientID, testClientSecret, fakemirakl.WithTokenPrefix(testTokenPrefix))
	t.Cleanup(fake.Close)
	env := newTestEnvWithFake(t, fake)

	resp, err := env.WriteConfig(map[string]any{"client_id": testClientID, "client_secret": testClientSecret, "token_url": fake.TokenURL()})
	requireStatus(t, resp, err, http.StatusBadGateway, "TLS certificate is not trusted")
	if got := fake.Requests(); got != 0 {
		t.Fatalf("an untrusted server got %d requests", got)
	}

	resp, err = env.WriteConfig(map[string]any{"client_id": testClientID, "client_secret": testClientSecret, "token_url": fake.TokenURL(), "ca_cert": fake.CACertPEM()})
	requireOK(t, resp, err)
	env.MustReadToken()
}

func TestServeWhileValid(t *testing.T) {
	env := newTestEnv(t)
	env.Configure(map[string]any{"verify": false})
	_, first := env.MustReadToken()

	env.clock.Advance(55 * time.Minute) // 4m59s left, below min_ttl: a new token is due
	env.fake.FailRandomly(1, fakemirakl.HTMLError(503))
	resp, err := env.ReadToken(nil)
	requireOK(t, resp, err)
	if resp.Data["access_token"] != first {
		t.Fatal("did not serve the still-valid cached token")
	}
	if resp.Secret.TTL != 299*time.Second {
		t.Fatalf("lease TTL = %s, want the 299s left", resp.Secret.TTL)
	}
	if len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], "HTTP 503") || !strings.Contains(resp.Warnings[0], "4m59s left") {
		t.Fatalf("warning does not name the failure: %v", resp.Warnings)
	}

	env.clock.Advance(5 * time.Minute) // expired: nothing valid left
	resp, err = env.ReadToken(nil)
	requireStatus(t, resp, err, http.StatusBadGateway, "HTTP 503")

	env.fake.FailRandomly(0, fakemirakl.Fault{})
	if _, tok := env.MustReadToken(); tok == first {
		t.Fatal("recovery served the expired token")
	}
}

func TestRefusedCredentialsFailFast(t *testing.T) {
	env := newTestEnv(t)
	env.Configure(map[string]any{"verify": false, "client_secret": "revoked-secret"})

	resp, err := env.ReadToken(nil)
	requireStatus(t, resp, err, http.StatusBadGateway, `error "invalid_client"`)
	first := err.Error()
	for range 10 {
		resp, err = env.ReadToken(nil)
		requireStatus(t, resp, err, http.StatusBadGateway, `error "invalid_client"`)
		if err.Error() != first {
			t.Fatalf("fail-fast error changed: %v", err)
		}
	}
	if got := env.fake.Requests(); got != 1 {
		t.Fatalf("refused credentials were retried: %d requests", got)
	}

	env.clock.Advance(refusalHold + time.Second)
	_, _ = env.ReadToken(nil)
	if got := env.fake.Requests(); got != 2 {
		t.Fatalf("after the hold, want one new attempt, fake saw %d", got)
	}

	// A config write clears the hold at once.
	resp, err = env.WriteConfig(map[string]any{"client_secret": testClientSecret, "verify": false})
	requireOK(t, resp, err)
	env.MustReadToken()
}

func TestRefusalServesValidCachedToken(t *testing.T) {
	env := newTestEnv(t)
	env.Configure(map[string]any{"verify": false})
	_, first := env.MustReadToken()
	env.fake.SetCredentials(testClientID, "rotated-at-mirakl")
	env.clock.Advance(55 * time.Minute)

	resp, err := env.ReadToken(nil)
	requireOK(t, resp, err)
	if resp.Data["access_token"] != first || len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], "invalid_client") {
		t.Fatalf("want the cached token with a warning, got %v / %v", resp.Data["access_token"], resp.Warnings)
	}
}

func TestUserAgentAndFormBody(t *testing.T) {
	var seen *http.Request
	fake := fakemirakl.New(testClientID, testClientSecret)
	t.Cleanup(fake.Close)
	srv := &recordingHandler{next: fake, seen: &seen}
	server := newLoopbackServer(t, srv)
	env := newTestEnvWithFake(t, fake)
	resp, err := env.WriteConfig(map[string]any{"client_id": testClientID, "client_secret": testClientSecret, "token_url": server + fakemirakl.TokenPath})
	requireOK(t, resp, err)
	if seen == nil {
		t.Fatal("no request reached the endpoint")
	}
	if got := seen.Header.Get("User-Agent"); got != "vault-plugin-mirakl/"+Version {
		t.Fatalf("User-Agent = %q", got)
	}
	if seen.Header.Get("Authorization") != "" {
		t.Fatal("credentials were sent in an Authorization header")
	}
	if fake.Stats().Issued != 1 || fake.Requests() != 1 {
		t.Fatalf("want exactly one request with the credentials in the body, got %+v", fake.Stats())
	}
}

func TestTLSBelow12Refused(t *testing.T) {
	fake := fakemirakl.NewHandler(testClientID, testClientSecret)
	server := httptest.NewUnstartedServer(fake)
	server.TLS = &tls.Config{MaxVersion: tls.VersionTLS11} //nolint:gosec // G402: an outdated server is what this test is about
	var connections atomic.Int32
	server.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		if state == http.StateNew {
			connections.Add(1)
		}
	}
	server.Config.ErrorLog = log.New(io.Discard, "", 0)
	server.StartTLS()
	t.Cleanup(server.Close)
	caPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: server.Certificate().Raw}))

	env := newTestEnvWithFake(t, fake)
	resp, err := env.WriteConfig(map[string]any{"client_id": testClientID, "client_secret": testClientSecret,
		"token_url": server.URL + fakemirakl.TokenPath, "ca_cert": caPEM})
	requireStatus(t, resp, err, http.StatusBadGateway, "protocol version")
	if fake.Requests() != 0 {
		t.Fatal("a TLS 1.1 server got a token request")
	}
	if got := connections.Load(); got != 1 {
		t.Fatalf("a permanent handshake failure was retried: %d connections", got)
	}
}
