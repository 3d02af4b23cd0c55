package mirakl

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/fakemirakl"
)

// Once the cached token has expired during an outage, reads that find
// nothing valid fail at once behind the gate: one request (with its
// retries) per gate opening, however many read.
func TestGateHoldsReadsThatFindNothingValid(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		fault    fakemirakl.Fault
		requests int // one request, with its retries within request_timeout
		reopens  time.Duration
	}{
		{"429 with Retry-After of an hour", fakemirakl.RateLimited("3600"), 1, maxRetryAfter},
		{"503", fakemirakl.HTMLError(503), 5, gateFirstWait}, // the first request retries; the next probes
		{"refusal", fakemirakl.OAuthError(401, "invalid_client", "no"), 1, refusalHold},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := newTestEnv(t)
			env.Configure(map[string]any{"verify": false, "request_timeout": "5s"})
			env.MustReadToken()
			env.clock.Advance(time.Hour) // expired
			env.fake.FailRandomly(1, tc.fault)
			failedAt := env.clock.Now()
			for i := range 20 {
				resp, err := env.ReadToken(nil)
				requireStatus(t, resp, err, http.StatusBadGateway, "Mirakl")
				if i > 0 && !strings.Contains(err.Error(), "(last attempt at "+formatTime(failedAt)+"; the next not before ") {
					t.Fatalf("read %d: the error does not say when the next attempt is due: %v", i, err)
				}
			}
			if got := env.fake.Requests() - 1; got != tc.requests {
				t.Fatalf("20 reads made %d requests, want %d", got, tc.requests)
			}
			next, _ := time.Parse(time.RFC3339, env.ReadStatus()["next_attempt"].(string))
			// Status shows whole seconds; the backoff is jittered over its upper half.
			if wait := next.Sub(failedAt); wait > tc.reopens || wait < tc.reopens/2-time.Second {
				t.Fatalf("the gate reopens %s after the failure, want between %s and %s", wait, tc.reopens/2, tc.reopens)
			}

			// Once it reopens, one read makes one request and the gate closes again.
			env.clock.Advance(tc.reopens)
			resp, err := env.ReadToken(nil)
			requireStatus(t, resp, err, http.StatusBadGateway, "Mirakl")
			resp, err = env.ReadToken(nil)
			requireStatus(t, resp, err, http.StatusBadGateway, "the next not before")
			// Once the gate has closed, an attempt is one HTTP request: a probe.
			if got := env.fake.Requests() - 1; got != tc.requests+1 {
				t.Fatalf("after the gate reopened: %d requests, want %d", got, tc.requests+1)
			}
		})
	}
}

// A herd of readers during an outage, with the production retry policy,
// makes one request.
func TestGateHoldsAHerdOfReaders(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	env.backend.retries = defaultRetryPolicy
	env.Configure(map[string]any{"verify": false})
	env.fake.FailRandomly(1, fakemirakl.RateLimited("3600"))
	var readers sync.WaitGroup
	for range 16 {
		readers.Go(func() {
			for range 50 {
				resp, err := env.ReadToken(nil)
				if err == nil || resp != nil {
					t.Errorf("a read during the outage: %v, %v", resp, err)
					return
				}
			}
		})
	}
	readers.Wait()
	if got := env.fake.Requests(); got != 1 {
		t.Fatalf("16 readers x 50 reads made %d requests, want 1", got)
	}
}

// A reader whose min_ttl the cached token cannot meet gets the cached token
// with a warning while Mirakl fails, and sends nothing more than the gate
// allows: not the refused secret again on every read, not one request per
// read during an outage.
func TestGateHoldsMinTTLReaders(t *testing.T) {
	t.Parallel()
	for name, failure := range map[string]func(*fakemirakl.Server){
		"outage":  func(f *fakemirakl.Server) { f.FailRandomly(1, fakemirakl.HTMLError(503)) },
		"refusal": func(f *fakemirakl.Server) { f.SetCredentials(testClientID, "rotated-at-mirakl") },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			env := newTestEnv(t)
			env.Configure(map[string]any{"verify": false})
			_, first := env.MustReadToken()
			env.clock.Advance(40 * time.Minute) // 19m59s left
			failure(env.fake)
			before := env.fake.Requests()
			for range 20 {
				resp, err := env.ReadToken(map[string]any{"min_ttl": "25m"})
				requireOK(t, resp, err)
				if resp.Data["access_token"] != first || len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], "could not be had") {
					t.Fatalf("want the cached token with a warning, got %v", resp.Warnings)
				}
				env.settle()
			}
			attempts := 5 // a 503 is retried within the request
			if name == "refusal" {
				attempts = 1
			}
			if got := env.fake.Requests() - before; got != attempts {
				t.Fatalf("20 min_ttl reads during the %s made %d requests, want %d", name, got, attempts)
			}
		})
	}
}

// A config check is an admin's explicit "try now": it passes the backoff
// and the refusal hold, but not Mirakl's Retry-After; a write that keeps
// token_url and does not check carries the hold over.
func TestGateAndConfigWrites(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	env.Configure(map[string]any{"verify": false})
	env.fake.FailRandomly(1, fakemirakl.HTMLError(503))
	resp, err := env.ReadToken(nil)
	requireStatus(t, resp, err, http.StatusBadGateway, "HTTP 503")
	requests := env.fake.Requests()

	// verify=false keeps the endpoint: reads are still held.
	resp, err = env.WriteConfig(map[string]any{"min_ttl": "5m", "verify": false})
	requireOK(t, resp, err)
	resp, err = env.ReadToken(nil)
	requireStatus(t, resp, err, http.StatusBadGateway, "the next not before")
	if env.fake.Requests() != requests {
		t.Fatal("a config write without a check reopened the gate")
	}

	// write -f: the check goes out once, behind the backoff.
	env.fake.FailRandomly(0, fakemirakl.Fault{})
	resp, err = env.WriteConfig(nil)
	requireOK(t, resp, err)
	if got := env.fake.Requests(); got != requests+1 {
		t.Fatalf("the config check made %d requests, want 1", got-requests)
	}
	env.MustReadToken()

	// Behind Mirakl's own Retry-After, even the check fails at once.
	env.fake.FailRandomly(1, fakemirakl.RateLimited("3600"))
	resp, err = env.WriteConfig(nil)
	requireStatus(t, resp, err, http.StatusBadGateway, "nothing was stored")
	requests = env.fake.Requests()
	resp, err = env.WriteConfig(nil)
	requireStatus(t, resp, err, http.StatusBadGateway, "nothing was stored: could not check the credentials: Mirakl token endpoint unavailable: HTTP 429")
	if env.fake.Requests() != requests {
		t.Fatal("a config check went out during Mirakl's Retry-After")
	}
	// A new token_url is another endpoint: its check goes out.
	other := fakemirakl.New(testClientID, testClientSecret)
	t.Cleanup(other.Close)
	resp, err = env.WriteConfig(map[string]any{"token_url": other.TokenURL(), "client_secret": testClientSecret})
	requireOK(t, resp, err)
}

// Whoever may update the config cannot make the plugin process, which serves
// every mount, panic or work for long: every field is bounded, checked before
// anything is built from it, and nothing is stored.
func TestConfigFieldsAreBounded(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	env.Configure(nil)
	before := env.fake.Requests()
	cases := []struct {
		field, value, want string
	}{
		{"client_secret", strings.Repeat("s", 8<<20), "client_secret is longer than 1024 bytes"},
		{"client_secret", strings.Repeat("<", 1<<20), "client_secret is longer than 1024 bytes"},
		{"client_secret", strings.Repeat("<", 1025), "client_secret is longer than 1024 bytes"},
		{"client_secret", "split\x00secret", "client_secret may hold only printable ASCII"},
		{"client_secret", "zero\u200bwidth", "client_secret may hold only printable ASCII"},
		{"client_id", strings.Repeat("i", 257), "client_id is longer than 256 bytes"},
		{"client_id", "id\nwith-a-line", "client_id may hold only printable ASCII"},
		{"token_url", "https://auth.mirakl.net/" + strings.Repeat("p", 2048), "token_url is longer than 2048 bytes"},
		{"token_url", "https://auth.mirakl.net/o auth", "token_url may hold only printable ASCII characters without spaces"},
		{"ca_cert", strings.Repeat("A", 65<<10), "ca_cert is longer than 65536 bytes"},
		{"ca_cert", "-----BEGIN CERTIFICATE-----\x00", "ca_cert may hold only PEM text"},
		{"min_ttl", "25h", "min_ttl must be zero or a positive duration of at most 24h0m0s"},
	}
	for _, tc := range cases {
		data := map[string]any{tc.field: tc.value}
		if tc.field != "client_secret" {
			data["client_secret"] = testClientSecret
		}
		resp, err := env.WriteConfig(data)
		requireUserError(t, resp, err, tc.want)
		if len(resp.Error().Error()) > 200 {
			t.Fatalf("%s: the error repeats the input: %.200s...", tc.field, resp.Error())
		}
	}
	resp, err := env.ReadConfig()
	requireOK(t, resp, err)
	if resp.Data["client_id"] != testClientID || resp.Data["token_url"] != env.fake.TokenURL() || env.fake.Requests() != before {
		t.Fatalf("a refused write changed something: %v, %d requests", resp.Data, env.fake.Requests()-before)
	}
	env.MustReadToken()
}

// An endpoint (or a confused proxy) that answers with what it received puts
// the form, secret included, into Go's transport errors: nothing of them is
// repeated, in a reader's error, a config writer's, or the log.
func TestTransportErrorsRepeatNothing(t *testing.T) {
	t.Parallel()
	answers := map[string]func(form string) string{
		"status line then the form": func(form string) string { return "HTTP/1.1 400 Bad Request\r\n" + form + "\r\n\r\n" },
		"the form as status line":   func(form string) string { return form + "\r\n\r\n" },
		"malformed status code":     func(form string) string { return "HTTP/1.1 4" + form + " x\r\n\r\n" },
	}
	for name, answer := range answers {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			url := rawServer(t, answer)
			env := newTestEnv(t)
			resp, err := env.WriteConfig(map[string]any{"client_id": testClientID, "client_secret": testClientSecret, "token_url": url, "request_timeout": "2s"})
			requireStatus(t, resp, err, http.StatusBadGateway, "Mirakl token endpoint unavailable: malformed HTTP answer")
			messages := []string{err.Error()}
			resp, err = env.WriteConfig(map[string]any{"client_id": testClientID, "client_secret": testClientSecret, "token_url": url, "verify": false})
			requireOK(t, resp, err)
			resp, err = env.ReadToken(nil)
			requireStatus(t, resp, err, http.StatusBadGateway, "Mirakl token endpoint unavailable: malformed HTTP answer")
			messages = append(messages, err.Error(), env.logs.String())
			for _, msg := range messages {
				for _, needle := range append(secretSpellings(testClientSecret), "client_id=", testClientID) {
					if strings.Contains(msg, needle) {
						t.Fatalf("%q repeated: %s", needle, msg)
					}
				}
			}
		})
	}
}

// rawServer answers every connection with answer(the request's body), bytes
// as they are, and closes it.
func rawServer(t *testing.T, answer func(body string) string) string {
	t.Helper()
	addr := rawListener(t, func(conn net.Conn, req *http.Request) {
		body := make([]byte, req.ContentLength)
		if _, err := req.Body.Read(body); err != nil && len(body) == 0 {
			return
		}
		_, _ = conn.Write([]byte(answer(string(body))))
	})
	return "http://" + addr + fakemirakl.TokenPath
}

// rawListener reads one HTTP request from each connection on a loopback
// port and lets serve write whatever it likes back; it returns the address.
func rawListener(t *testing.T, serve func(conn net.Conn, req *http.Request)) string {
	t.Helper()
	return loopbackListener(t, func(conn net.Conn) {
		req, err := http.ReadRequest(bufio.NewReader(conn))
		if err != nil {
			return
		}
		serve(conn, req)
	})
}

// loopbackListener hands each connection on a loopback port to serve, below
// HTTP, and closes it after; it returns the address.
func loopbackListener(t *testing.T, serve func(conn net.Conn)) string {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = listener.Close() })
	go func() {
		for {
			conn, err := listener.Accept()
			if err != nil {
				return
			}
			go func() {
				defer func() { _ = conn.Close() }()
				serve(conn)
			}()
		}
	}()
	return listener.Addr().String()
}

// One 429 cannot stop refreshes for longer than the cap, whatever its
// Retry-After asks.
func TestRetryAfterIsCapped(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	env.Configure(map[string]any{"verify": false})
	env.MustReadToken()
	env.clock.Advance(49 * time.Minute) // 10m59s left: refresh due
	env.fake.FailRandomly(1, fakemirakl.RateLimited("31536000"))
	env.periodic()
	limitedAt := env.clock.Now()
	if got := env.ReadStatus()["next_attempt"]; got != formatTime(limitedAt.Add(maxRetryAfter)) {
		t.Fatalf("next attempt %v, want %s", got, formatTime(limitedAt.Add(maxRetryAfter)))
	}
	env.fake.FailRandomly(0, fakemirakl.Fault{})
	env.clock.Advance(maxRetryAfter)
	env.periodic()
	if got := env.fake.Requests(); got != 3 {
		t.Fatalf("after the capped Retry-After: %d requests, want 3", got)
	}
	resp, _ := env.MustReadToken()
	if resp.Secret.TTL < 50*time.Minute {
		t.Fatalf("the refresh after the cap did not bring a new token: %s left", resp.Secret.TTL)
	}
}

// What Mirakl answers as a token is served only if it is a token: an RFC 6750
// b64token of at most 8 KiB, with target_app and resource_owner bounded and printable.
func TestTokenContentIsChecked(t *testing.T) {
	t.Parallel()
	answer := func(accessToken, targetApp, resourceOwner string) fakemirakl.Fault {
		return fakemirakl.RawToken(fmt.Sprintf(`{"token_type":"Bearer","access_token":%q,"expires_in":3599,"target_app":%q,"resource_owner":%q}`,
			accessToken, targetApp, resourceOwner))
	}
	jwt := "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl-_~+/=="
	bad := map[string]fakemirakl.Fault{
		"CR LF in the token":         answer("tok\r\nX-Injected: 1", "", ""),
		"NUL in the token":           answer("tok\x00en", "", ""),
		"space in the token":         answer("tok en", "", ""),
		"only padding":               answer("==", "", ""),
		"a 256,000 byte token":       answer(strings.Repeat("t", 256000), "", ""),
		"8 KiB and one":              answer(strings.Repeat("t", 8<<10+1), "", ""),
		"newline in target_app":      answer(jwt, "app\n", ""),
		"long resource_owner":        answer(jwt, "", strings.Repeat("o", 257)),
		"NUL in resource_owner":      answer(jwt, "", "own\x00er"),
		"bidi control in target_app": answer(jwt, "app\u202e", ""),
	}
	for name, fault := range bad {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			env := newTestEnv(t)
			env.Configure(map[string]any{"verify": false})
			env.fake.Enqueue(fault)
			resp, err := env.ReadToken(nil)
			requireStatus(t, resp, err, http.StatusBadGateway, "Mirakl answered something that is not a usable token")
		})
	}
	env := newTestEnv(t)
	env.Configure(map[string]any{"verify": false})
	env.fake.Enqueue(answer(jwt, "Boutique Élan", strings.Repeat("o", 256)))
	resp, tok := env.MustReadToken()
	if tok != jwt || resp.Data["target_app"] != "Boutique Élan" {
		t.Fatalf("a valid token was not served as sent: %q, %v", tok, resp.Data)
	}
	env.fake.Enqueue(answer(strings.Repeat("t", 8<<10), "", ""))
	env.clock.Advance(time.Hour)
	env.MustReadToken()
}

// A config delete or rewrite cancels the old config's request in flight: no
// retry goes out with the deleted secret after the delete returned.
func TestConfigChangeStopsRequestsInFlight(t *testing.T) {
	t.Parallel()
	for name, change := range map[string]func(*testEnv) (*logical.Response, error){
		"delete": func(e *testEnv) (*logical.Response, error) { return e.DeleteConfig() },
		"rewrite": func(e *testEnv) (*logical.Response, error) {
			elsewhere := fakemirakl.New(testClientID, "the-new-secret")
			e.t.Cleanup(elsewhere.Close)
			return e.WriteConfig(map[string]any{"verify": false, "token_url": elsewhere.TokenURL(), "client_secret": "the-new-secret"})
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			env := newTestEnv(t)
			env.backend.retries = retryPolicy{MaxRetries: 4, WaitMin: time.Second, WaitMax: 5 * time.Second}
			env.Configure(map[string]any{"verify": false, "request_timeout": "30s"})
			env.fake.FailRandomly(1, fakemirakl.HTMLError(503))
			read := make(chan error, 1)
			go func() {
				_, err := env.ReadToken(nil)
				read <- err
			}()
			waitFor(t, "the first attempt", func() bool { return env.fake.Requests() >= 1 })
			resp, err := change(env)
			requireOK(t, resp, err)
			atChange := env.fake.Requests()
			select {
			case err := <-read:
				t.Logf("the read across the %s ended with: %v", name, err)
			case <-time.After(10 * time.Second):
				t.Fatal("the read did not return after its config changed")
			}
			waitFor(t, "the old connections to close", func() bool { return env.fake.OpenConnections() == 0 })
			if got := env.fake.Requests(); got != atChange {
				t.Fatalf("%d requests with the old config arrived after the %s returned", got-atChange, name)
			}
		})
	}
}

// No lease outlives its token: leases are rounded down to whole seconds.
func TestLeaseNeverOutlivesItsToken(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	env.Configure(map[string]any{"verify": false})
	env.MustReadToken()
	for _, step := range []time.Duration{400 * time.Millisecond, 500 * time.Millisecond, 600 * time.Millisecond, 999 * time.Millisecond} {
		env.clock.Advance(step)
		now := env.clock.Now()
		resp, _ := env.MustReadToken()
		expiresAt, _ := time.Parse(time.RFC3339Nano, resp.Secret.InternalData[internalExpiresAt].(string))
		if leaseEnd := now.Add(resp.Secret.TTL); leaseEnd.After(expiresAt) {
			t.Fatalf("a lease of %s ends at %s, after its token (%s)", resp.Secret.TTL, leaseEnd, expiresAt)
		}
		if resp.Data["expires_in"] != int64(resp.Secret.TTL.Seconds()) {
			t.Fatalf("expires_in %v, lease %s", resp.Data["expires_in"], resp.Secret.TTL)
		}
	}
}

// The config's min_ttl shapes refresh ahead and warnings, never a wait: on a
// mount idle since its config write, a read that finds less left gets the
// valid cached token with a warning, and the next one the token its read
// fetched in the background; while Mirakl fails, the cached one with the
// failure named.
func TestMinTTLOnAnIdleMount(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	env.Configure(nil) // the check's token is cached, unread
	verified := env.fake.IssuedTokens()[0]
	env.clock.Advance(3597 * time.Second) // 2s left
	resp, tok := env.MustReadToken()
	if tok != verified || len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], "a new one is on its way") {
		t.Fatalf("a read below min_ttl got a new token %v, warnings %v", tok != verified, resp.Warnings)
	}
	env.settle()
	resp, tok = env.MustReadToken()
	if tok == verified || resp.Secret.TTL < 10*time.Minute || len(resp.Warnings) != 0 {
		t.Fatalf("the read after: a token with %s left (%v)", resp.Secret.TTL, resp.Warnings)
	}

	env.clock.Advance(3590 * time.Second) // 9s left, Mirakl down
	env.fake.FailRandomly(1, fakemirakl.HTMLError(503))
	env.MustReadToken() // starts the background request, which fails
	env.settle()
	requests := env.fake.Requests()
	resp, got := env.MustReadToken()
	if got != tok || len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], "HTTP 503") {
		t.Fatalf("during an outage: token %v, warnings %v", got == tok, resp.Warnings)
	}
	env.settle()
	if env.fake.Requests() != requests {
		t.Fatalf("a read during the outage, behind the gate: %d requests", env.fake.Requests()-requests)
	}
}

// One reader giving up does not fail the readers waiting beside it.
func TestReaderCancelLeavesOthersTheirToken(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	env.Configure(map[string]any{"verify": false})
	env.fake.Enqueue(fakemirakl.Slow(300 * time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	impatient := make(chan error, 1)
	go func() {
		_, err := env.backend.HandleRequest(ctx, &logical.Request{Operation: logical.ReadOperation, Path: "token", Storage: env.storage, MountPoint: "mirakl/"})
		impatient <- err
	}()
	waitFor(t, "the shared request", func() bool { return env.fake.Requests() == 1 })
	patient := make(chan *logical.Response, 1)
	go func() {
		resp, _ := env.ReadToken(nil)
		patient <- resp
	}()
	cancel()
	select {
	case err := <-impatient:
		if err == nil {
			t.Fatal("the cancelled reader got no error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the cancelled reader did not return")
	}
	select {
	case resp := <-patient:
		if resp == nil || resp.IsError() || resp.Data["access_token"] == nil {
			t.Fatalf("the reader beside it failed: %#v", resp)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the patient reader did not return")
	}
	if got := env.fake.Requests(); got != 1 {
		t.Fatalf("%d requests, want the one shared", got)
	}
}

// Each field's limit is inclusive, and every printable ASCII character is a
// credential character, space and '~' included.
func TestConfigFieldsAtTheirLimits(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	secret := "~ " + strings.Repeat("~", maxClientSecretBytes-2)
	id := "id with spaces ~" + strings.Repeat("i", maxClientIDBytes-16)
	env.fake.SetCredentials(id, secret)
	resp, err := env.WriteConfig(map[string]any{"client_id": id, "client_secret": secret, "min_ttl": "24h",
		"token_url": env.fake.TokenURL() + "?~" + strings.Repeat("q", maxTokenURLBytes-len(env.fake.TokenURL())-2), "verify": false})
	requireOK(t, resp, err)
	resp, err = env.ReadConfig()
	requireOK(t, resp, err)
	if resp.Data["client_id"] != id || resp.Data["min_ttl"] != int64(24*60*60) || len(resp.Data["token_url"].(string)) != maxTokenURLBytes {
		t.Fatalf("a config at its limits was not stored as written: %v", resp.Data)
	}
}

// A refusal is carried over to a config that keeps the credentials (the
// hold goes on), and not to one that changes them (its first read asks).
func TestGateCarriesARefusalOnlyWithTheSameCredentials(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		update map[string]any
		held   bool
	}{
		"same credentials":  {map[string]any{"min_ttl": "5m", "verify": false}, true},
		"another client_id": {map[string]any{"client_id": "another-id", "verify": false}, false},
		"another secret":    {map[string]any{"client_secret": "another-secret", "verify": false}, false},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			env := newTestEnv(t)
			env.Configure(map[string]any{"verify": false})
			env.fake.SetCredentials(testClientID, "rotated-at-mirakl")
			resp, err := env.ReadToken(nil)
			requireStatus(t, resp, err, http.StatusBadGateway, "Mirakl refused the credentials")
			resp, err = env.WriteConfig(tc.update)
			requireOK(t, resp, err)
			requests := env.fake.Requests()
			_, _ = env.ReadToken(nil)
			if asked := env.fake.Requests() > requests; asked == tc.held {
				t.Fatalf("after the update, the read asked Mirakl: %v; want %v", asked, !tc.held)
			}
		})
	}
}

// Any 2xx with a token body is a token, 299 included; 3xx never is. (A 1xx
// is informational: the client waits for the final answer.)
func TestTokenAnswerStatusRanges(t *testing.T) {
	t.Parallel()
	body := `{"token_type":"Bearer","access_token":"` + testTokenPrefix + `ranged","expires_in":3599}`
	for status, served := range map[int]bool{200: true, 201: true, 299: true, 300: false} {
		env := newTestEnv(t)
		env.Configure(map[string]any{"verify": false})
		env.fake.Enqueue(fakemirakl.Fault{Status: status, Body: body, ContentType: "application/json"})
		resp, err := env.ReadToken(nil)
		if got := err == nil && resp != nil && !resp.IsError(); got != served {
			t.Fatalf("HTTP %d with a token body: served %v, want %v (%v)", status, got, served, err)
		}
	}
}
