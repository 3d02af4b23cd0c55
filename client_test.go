package mirakl

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
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

// The fault matrix: each failure alone (the read fails with a clear 502 that
// names it, after retries if it is transient) and, for a transient one,
// followed by a success (the read succeeds after one retry).
func TestFaultMatrix(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		fault     fakemirakl.Fault
		retried   bool   // a transient failure, retried within request_timeout
		attempts  int    // requests when the failure persists; 0: as many as request_timeout allows
		wantError string // when the failure persists
	}{
		{"500", fakemirakl.HTMLError(500), true, 5, "Mirakl token endpoint unavailable: HTTP 500"},
		{"502", fakemirakl.HTMLError(502), true, 5, "unavailable: HTTP 502 (text/html, 110 bytes)"},
		{"503", fakemirakl.HTMLError(503), true, 5, "unavailable: HTTP 503"},
		{"504", fakemirakl.HTMLError(504), true, 5, "unavailable: HTTP 504"},
		{"429 without Retry-After", fakemirakl.RateLimited(""), true, 5, "unavailable: HTTP 429"},
		{"429 with Retry-After", fakemirakl.RateLimited("0"), true, 5, "unavailable: HTTP 429"},
		{"connection reset", fakemirakl.ConnectionReset(), true, 5, "unavailable"},
		{"slow attempt", fakemirakl.Slow(time.Minute), true, 0, "Mirakl token endpoint unavailable: no answer within request_timeout"},
		{"HTML page with 200", fakemirakl.HTMLError(200), false, 1, "not a usable token: HTTP 200"},
		{"oversized body", fakemirakl.Oversized(2 << 20), false, 1, "response body larger than 256 KiB"},
		{"invalid_request", fakemirakl.OAuthError(400, "invalid_request", "bad form"), false, 1, `refused the credentials: HTTP 400, error "invalid_request"`},
		{"unauthorized_client", fakemirakl.OAuthError(403, "unauthorized_client", "disabled"), false, 1, `HTTP 403, error "unauthorized_client"`},
		{"wrong token_type", fakemirakl.RawToken(`{"token_type":"MAC","access_token":"x","expires_in":3599}`), false, 1, "HTTP 200 (application/json, 57 bytes), token_type is not Bearer"},
		{"missing expires_in", fakemirakl.RawToken(`{"token_type":"Bearer","access_token":"x"}`), false, 1, "expires_in is missing"},
		{"negative expires_in", fakemirakl.RawToken(`{"token_type":"bearer","access_token":"x","expires_in":-5}`), false, 1, "expires_in is too short (-5; want at least 3 seconds)"},
		{"text expires_in", fakemirakl.RawToken(`{"token_type":"Bearer","access_token":"x","expires_in":"soon"}`), false, 1, "not a usable token"},
		{"missing access_token", fakemirakl.RawToken(`{"token_type":"Bearer","expires_in":3599}`), false, 1, "access_token is missing"},
		{"expires_in of 1s", fakemirakl.RawToken(`{"token_type":"Bearer","access_token":"x","expires_in":1}`), false, 1, "expires_in is too short (1; want at least 3 seconds)"},
		{"expires_in of 2s as text", fakemirakl.RawToken(`{"token_type":"Bearer","access_token":"x","expires_in":"2"}`), false, 1, "expires_in is too short (2; want at least 3 seconds)"},
		{"expires_in of a leap year and a second", fakemirakl.RawToken(`{"token_type":"Bearer","access_token":"x","expires_in":31622401}`), false, 1, "expires_in is more than a year (3.1622401e+07 seconds)"},
		{"temporary redirect", fakemirakl.Redirect(307, "http://127.0.0.2:1/elsewhere"), false, 1, "HTTP 307 (text/html, 0 bytes), redirects are not followed"},
		{"OAuth error without JSON", fakemirakl.HTMLError(401), false, 1, "HTTP 401 (text/html, 112 bytes), no OAuth error in the answer"},
	}
	for _, tc := range cases {
		t.Run(tc.name+"/alone", func(t *testing.T) {
			t.Parallel()
			env := newTestEnv(t)
			timeout := "5s"
			if tc.attempts == 0 {
				timeout = "1s" // the shortest: a slow attempt is given a third of it
			}
			env.Configure(map[string]any{"verify": false, "request_timeout": timeout})
			env.fake.FailRandomly(1, tc.fault)
			resp, err := env.ReadToken(nil)
			requireStatus(t, resp, err, http.StatusBadGateway, tc.wantError)
			got := env.fake.Requests()
			if tc.attempts != 0 && got != tc.attempts {
				t.Fatalf("the fake saw %d requests, want %d (retried: %v)", got, tc.attempts, tc.retried)
			}
			if tc.attempts == 0 && got < 2 {
				t.Fatalf("a transient failure was not retried: %d requests", got)
			}
		})
		if !tc.retried {
			continue
		}
		t.Run(tc.name+"/then success", func(t *testing.T) {
			t.Parallel()
			env := newTestEnv(t)
			env.Configure(map[string]any{"verify": false, "request_timeout": "3s"})
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

// A Retry-After within request_timeout is waited out before the next
// attempt, whether in seconds or as an HTTP date on the engine's clock.
func TestRetryAfterHonoured(t *testing.T) {
	t.Parallel()
	for name, retryAfter := range map[string]func(now time.Time) string{
		"seconds":   func(time.Time) string { return "1" },
		"HTTP date": func(now time.Time) string { return now.Add(time.Second).UTC().Format(http.TimeFormat) },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			env := newTestEnv(t)
			env.Configure(map[string]any{"verify": false, "request_timeout": "10s"})
			env.fake.Enqueue(fakemirakl.RateLimited(retryAfter(env.clock.Now())))
			env.MustReadToken()
			arrivals := env.fake.Arrivals()
			if len(arrivals) != 2 {
				t.Fatalf("fake saw %d requests, want 2", len(arrivals))
			}
			// Only a lower bound: a busy machine may wait longer, never less.
			if waited := arrivals[1].Sub(arrivals[0]); waited < time.Second {
				t.Fatalf("the retry came %s after the 429, before the second Mirakl asked for", waited)
			}
		})
	}
}

func TestRetryAfterBeyondTimeoutFailsAtOnce(t *testing.T) {
	t.Parallel()
	for _, inTwoMinutes := range []func(now time.Time) string{
		func(time.Time) string { return "120" },
		func(now time.Time) string { return now.Add(2 * time.Minute).UTC().Format(http.TimeFormat) },
	} {
		env := newTestEnv(t)
		env.Configure(map[string]any{"verify": false, "request_timeout": "1s"})
		value := inTwoMinutes(env.clock.Now()) // the engine's clock, not the machine's
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
	t.Parallel()
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	cases := map[string]time.Duration{
		"7":                             7 * time.Second,
		"Sat, 28 Nov 2026 12:00:30 GMT": 30 * time.Second,
		"Sat, 28 Nov 2026 11:00:00 GMT": 0,
		"0":                             0, // retry at once
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
	t.Parallel()
	fake := fakemirakl.NewTLS(testClientID, testClientSecret, fakemirakl.WithTokenPrefix(testTokenPrefix))
	t.Cleanup(fake.Close)
	env := newTestEnvWithFake(t, fake)

	resp, err := env.WriteConfig(map[string]any{"client_id": testClientID, "client_secret": testClientSecret, "token_url": fake.TokenURL()})
	requireStatus(t, resp, err, http.StatusBadGateway, "TLS certificate not trusted (behind a TLS-inspecting proxy, set ca_cert")
	if got := fake.Requests(); got != 0 {
		t.Fatalf("an untrusted server got %d requests", got)
	}

	resp, err = env.WriteConfig(map[string]any{"client_id": testClientID, "client_secret": testClientSecret, "token_url": fake.TokenURL(), "ca_cert": fake.CACertPEM()})
	requireOK(t, resp, err)
	env.MustReadToken()
}

// ca_cert is trusted in addition to the system roots: an endpoint that they
// trust stays trusted when ca_cert names, say, a proxy's CA.
func TestCACertAddsToSystemRoots(t *testing.T) {
	t.Parallel()
	leaf, err := x509.ParseCertificate(systemTrustedCert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	roots, err := x509.SystemCertPool()
	if err != nil {
		t.Skip(err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots}); err != nil {
		t.Skipf("the system roots are not the tests' own here (SSL_CERT_FILE): %v", err)
	}
	fake := fakemirakl.NewHandler(testClientID, testClientSecret, fakemirakl.WithTokenPrefix(testTokenPrefix))
	server := httptest.NewUnstartedServer(fake)
	server.TLS = &tls.Config{Certificates: []tls.Certificate{systemTrustedCert}, MinVersion: tls.VersionTLS12}
	server.StartTLS()
	t.Cleanup(server.Close)
	otherCA := fakemirakl.NewTLS(testClientID, testClientSecret)
	otherCA.Close()

	env := newTestEnvWithFake(t, fake)
	for _, caCert := range []string{"", otherCA.CACertPEM()} {
		resp, err := env.WriteConfig(map[string]any{"client_id": testClientID, "client_secret": testClientSecret,
			"token_url": server.URL + fakemirakl.TokenPath, "ca_cert": caCert})
		requireOK(t, resp, err)
	}
	env.MustReadToken()
}

func TestServeWhileValid(t *testing.T) {
	t.Parallel()
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
	env.settle() // the background refresh fails
	resp, err = env.ReadToken(nil)
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
	env.clock.Advance(gateLastWait) // the gate reopens
	if _, tok := env.MustReadToken(); tok == first {
		t.Fatal("recovery served the expired token")
	}
}

func TestRefusedCredentialsFailFast(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	env.Configure(map[string]any{"verify": false, "client_secret": "revoked-secret"})

	resp, err := env.ReadToken(nil)
	requireStatus(t, resp, err, http.StatusBadGateway, `error "invalid_client"`)
	resp, err = env.ReadToken(nil)
	requireStatus(t, resp, err, http.StatusBadGateway, `error "invalid_client" (last attempt at 2026-11-28T11:00:00Z; the next not before 2026-11-28T11:00:30Z)`)
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

	// The hold lasts 30 seconds of the engine's clock.
	env.clock.Advance(29 * time.Second)
	resp, err = env.ReadToken(nil)
	requireStatus(t, resp, err, http.StatusBadGateway, `error "invalid_client"`)
	if got := env.fake.Requests(); got != 1 {
		t.Fatalf("29s into the hold, the refused credentials were tried again: %d requests", got)
	}
	env.clock.Advance(2 * time.Second)
	resp, err = env.ReadToken(nil)
	requireStatus(t, resp, err, http.StatusBadGateway, `error "invalid_client"`)
	if got := env.fake.Requests(); got != 2 {
		t.Fatalf("after the hold, want one new attempt, fake saw %d", got)
	}

	// A config write clears the hold at once.
	resp, err = env.WriteConfig(map[string]any{"client_secret": testClientSecret, "verify": false})
	requireOK(t, resp, err)
	env.MustReadToken()
}

func TestRefusalServesValidCachedToken(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	env.Configure(map[string]any{"verify": false})
	_, first := env.MustReadToken()
	env.fake.SetCredentials(testClientID, "rotated-at-mirakl")
	env.clock.Advance(55 * time.Minute)

	_, _ = env.ReadToken(nil)
	env.settle() // the background refresh is refused
	resp, err := env.ReadToken(nil)
	requireOK(t, resp, err)
	if resp.Data["access_token"] != first || len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], "invalid_client") {
		t.Fatalf("want the cached token with a warning, got %v / %v", resp.Data["access_token"], resp.Warnings)
	}
}

func TestUserAgentAndFormBody(t *testing.T) {
	t.Parallel()
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
	t.Parallel()
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
	requireStatus(t, resp, err, http.StatusBadGateway, "unavailable: TLS handshake failed")
	if fake.Requests() != 0 {
		t.Fatal("a TLS 1.1 server got a token request")
	}
	if got := connections.Load(); got != 1 {
		t.Fatalf("a permanent handshake failure was retried: %d connections", got)
	}
}

// A redirect would carry the form, secret included, to its Location (307,
// 308) or turn the request into a GET of any URL whose answer the error
// would describe (301, 302, 303): none is followed.
func TestRedirectsNotFollowed(t *testing.T) {
	t.Parallel()
	elsewhere := fakemirakl.New(testClientID, testClientSecret)
	t.Cleanup(elsewhere.Close)
	t.Cleanup(func() { requireNoViolations(t, elsewhere) })
	for _, status := range []int{300, 301, 302, 303, 307, 308} {
		env := newTestEnv(t)
		env.fake.Enqueue(fakemirakl.Redirect(status, elsewhere.TokenURL()))
		resp, err := env.WriteConfig(map[string]any{"client_id": testClientID, "client_secret": testClientSecret, "token_url": env.fake.TokenURL()})
		requireStatus(t, resp, err, http.StatusBadGateway, fmt.Sprintf("not a usable token: HTTP %d (text/html, 0 bytes), redirects are not followed", status))
		if got := env.fake.Requests(); got != 1 {
			t.Fatalf("HTTP %d: %d requests to the configured endpoint, want 1", status, got)
		}
	}
	if got := elsewhere.Requests(); got != 0 {
		t.Fatalf("the redirect target received %d requests", got)
	}
}

// From a refusal, only a registered RFC 6749 error code is repeated to
// everyone. The free-text error_description reaches only a writer who sent
// the secret in that request: normalised to printable ASCII with runs of
// anything else as one space, the secret removed (after normalising, so that
// a secret split by a control or invisible character is still found), and
// at most 200 characters. No reader sees it.
func TestOAuthErrorDescriptionOnlyForTheSecretsWriter(t *testing.T) {
	t.Parallel()
	const secret = `p+a/s=s&w%o"r d<x>`
	cases := []struct{ code, description, want string }{
		{"invalid_client", "you sent " + secret + " which is wrong", `error "invalid_client": you sent [redacted] which is wrong`},
		{"invalid_client", "split p+a/s=s&w%o\"r\n d<x>, joined back", `error "invalid_client": split [redacted], joined back`},
		{"invalid_client", "zero\u200bwidth p+a/s=s&w%o\"r\u200b\u200b d<x>", `error "invalid_client": zero width [redacted]`},
		{"invalid_client", "nul p+a/s=s&w%o\"r\u0000 d<x>", `error "invalid_client": nul [redacted]`},
		{"invalid_request\u001b[31m", "a ~tilde\u007f, \u00e9", `an unregistered OAuth error code: a ~tilde ,`},
		{"invalid_request", strings.Repeat("x", 200), `error "invalid_request": ` + strings.Repeat("x", 200)},
		{"invalid_request", strings.Repeat("y", 201), `error "invalid_request": ` + strings.Repeat("y", 200) + "..."},
		{"invalid_request", "", `error "invalid_request"`},
		{"invalid_request", "\n\tleading and trailing\r\n", `error "invalid_request": leading and trailing`},
	}
	for _, tc := range cases {
		fake := fakemirakl.New(testClientID, secret)
		t.Cleanup(fake.Close)
		env := newTestEnvWithFake(t, fake)
		refusal := fakemirakl.OAuthError(http.StatusUnauthorized, tc.code, tc.description)
		fake.Enqueue(refusal)
		resp, err := env.WriteConfig(map[string]any{"client_id": testClientID, "client_secret": secret, "token_url": fake.TokenURL()})
		requireStatus(t, resp, err, http.StatusBadRequest, "nothing was stored")
		if got, want := resp.Error().Error(), "nothing was stored: Mirakl refused the credentials: HTTP 401, "+tc.want; got != want {
			t.Errorf("refusal %q, %q:\n got %q\nwant %q", tc.code, tc.description, got, want)
		}

		// A reader, and a writer who did not send the secret, get the classes alone.
		resp, err = env.WriteConfig(map[string]any{"client_id": testClientID, "client_secret": secret, "token_url": fake.TokenURL(), "verify": false})
		requireOK(t, resp, err)
		fake.Enqueue(refusal)
		resp, err = env.ReadToken(nil)
		requireStatus(t, resp, err, http.StatusBadGateway, "Mirakl refused the credentials: HTTP 401")
		if tc.description != "" && strings.Contains(err.Error(), tc.description[:4]) {
			t.Errorf("a reader saw the error_description: %v", err)
		}
		fake.Enqueue(refusal)
		resp, err = env.WriteConfig(map[string]any{"min_ttl": "5m"})
		requireStatus(t, resp, err, http.StatusBadRequest, "nothing was stored: Mirakl refused the credentials: HTTP 401")
		if tc.description != "" && strings.Contains(resp.Error().Error(), tc.description[:4]) {
			t.Errorf("a writer who did not send the secret saw the error_description: %v", resp.Error())
		}
	}
}

// An error describes Mirakl's answer by its status, and by its content type
// and length when there was either to describe.
func TestUpstreamErrorDescribesTheAnswer(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		fault fakemirakl.Fault
		want  string
	}{
		{"status alone", fakemirakl.Fault{Status: http.StatusBadGateway}, "Mirakl token endpoint unavailable: HTTP 502"},
		{"empty typed body", fakemirakl.Fault{Status: http.StatusBadGateway, ContentType: "text/html"}, "Mirakl token endpoint unavailable: HTTP 502 (text/html, 0 bytes)"},
		{"body of no valid type", fakemirakl.Fault{Status: http.StatusBadGateway, ContentType: "not a type", Body: "down"},
			"Mirakl token endpoint unavailable: HTTP 502 (no Content-Type, 4 bytes)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := newTestEnv(t)
			env.Configure(map[string]any{"verify": false, "request_timeout": "5s"})
			env.fake.FailRandomly(1, tc.fault)
			resp, err := env.ReadToken(nil)
			requireStatus(t, resp, err, http.StatusBadGateway, tc.want)
			if err.Error() != tc.want {
				t.Fatalf("error %q, want %q", err, tc.want)
			}
		})
	}
}

// expires_in is accepted from 3 seconds (shorter tokens cannot be shared) to
// a leap year (longer is no lifetime an OAuth server means).
func TestExpiresInBounds(t *testing.T) {
	t.Parallel()
	for _, seconds := range []int{3, 366 * 24 * 60 * 60} {
		env := newTestEnv(t)
		env.Configure(map[string]any{"verify": false})
		env.fake.Enqueue(fakemirakl.RawToken(fmt.Sprintf(`{"token_type":"Bearer","access_token":"%sbound","expires_in":%d}`, testTokenPrefix, seconds)))
		resp, _ := env.MustReadToken()
		if resp.Data["expires_in"] != int64(seconds) {
			t.Fatalf("expires_in %d: read %v", seconds, resp.Data["expires_in"])
		}
	}
}

// An answer is read up to 256 KiB: a token padded to exactly that is usable.
func TestAnswerOfTheLargestSizeIsRead(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	env.Configure(map[string]any{"verify": false})
	env.fake.Enqueue(fakemirakl.Oversized(256 << 10))
	env.MustReadToken()
}

func TestBackoffHonoursRetryAfterOnTheEngineClock(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	c := &tokenClient{now: func() time.Time { return now }}
	for value, want := range map[string]time.Duration{
		"7":                             7 * time.Second,
		"Sat, 28 Nov 2026 12:00:30 GMT": 30 * time.Second,
	} {
		resp := &http.Response{Header: http.Header{"Retry-After": {value}}}
		if got := c.backoff(time.Millisecond, time.Millisecond, 0, resp); got != want {
			t.Errorf("Retry-After %q: waits %s, want %s", value, got, want)
		}
	}
	for attempt, ceiling := range []time.Duration{100, 200, 400, 800, 1000, 1000} {
		got := c.backoff(100*time.Millisecond, time.Second, attempt, &http.Response{})
		if ceiling *= time.Millisecond; got < ceiling/2 || got > ceiling {
			t.Errorf("attempt %d: waits %s, want between %s and %s", attempt, got, ceiling/2, ceiling)
		}
	}
}
