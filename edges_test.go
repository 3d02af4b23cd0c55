package mirakl

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/fakemirakl"
)

// The promises at the edges (issue 24): each test drives the backend through
// HandleRequest with the package's fake, and fails on the engine before them.

// hookedStorage runs a hook before each Get and Put of a key: slow, failing
// or hanging storage, on the test's terms. A hook's error is the storage's.
type hookedStorage struct {
	*logical.InmemStorage
	beforeGet func(ctx context.Context, key string) error
	beforePut func(ctx context.Context, key string) error
}

func (s *hookedStorage) Get(ctx context.Context, key string) (*logical.StorageEntry, error) {
	if s.beforeGet != nil {
		if err := s.beforeGet(ctx, key); err != nil {
			return nil, err
		}
	}
	return s.InmemStorage.Get(ctx, key)
}

func (s *hookedStorage) Put(ctx context.Context, entry *logical.StorageEntry) error {
	if s.beforePut != nil {
		if err := s.beforePut(ctx, entry.Key); err != nil {
			return err
		}
	}
	return s.InmemStorage.Put(ctx, entry)
}

// nodeOn is a new backend (a restarted plugin) whose storage is s, on the
// env's clock and logs.
func (e *testEnv) nodeOn(s logical.Storage) *backend {
	e.t.Helper()
	config := logical.TestBackendConfig()
	config.StorageView = s
	config.Logger = hclog.New(&hclog.LoggerOptions{Level: hclog.Trace, Output: e.logs})
	b, err := newBackend(context.Background(), config, e.clock.Now)
	if err != nil {
		e.t.Fatal(err)
	}
	b.retries = e.backend.retries
	b.fresherWait = e.backend.fresherWait
	e.t.Cleanup(func() { cleanupWithin(e.t, b) })
	return b
}

func readOn(ctx context.Context, b *backend, s logical.Storage, data map[string]any) (*logical.Response, error) {
	return b.HandleRequest(ctx, &logical.Request{Operation: logical.ReadOperation, Path: "token", Data: data, Storage: s, MountPoint: "mirakl/"})
}

// readAsyncWith reads mount/token with data in a goroutine.
func (e *testEnv) readAsyncWith(data map[string]any) <-chan readResult {
	ch := make(chan readResult, 1)
	go func() {
		resp, err := e.ReadToken(data)
		ch <- readResult{resp, err}
	}()
	return ch
}

// 1. No reader waits on Mirakl while a valid token is cached: Mirakl hangs
// from the refresh point, with request_timeout at its 5m maximum and the
// cached token below the config's min_ttl. Every reader gets the cached token
// at once; a reader that asks for more on its own read waits for at most
// fresherWait for the request started for it, and never for one it joined.
func TestNoReaderWaitsWhileAValidTokenIsCached(t *testing.T) {
	t.Parallel()
	for _, firstReader := range []string{"config min_ttl", "own min_ttl"} {
		t.Run(firstReader+" first", func(t *testing.T) {
			t.Parallel()
			env := newTestEnv(t)
			env.backend.fresherWait = 50 * time.Millisecond
			env.Configure(map[string]any{"verify": false, "request_timeout": "5m", "min_ttl": "25m"})
			_, first := env.MustReadToken()
			hold, _ := releaser(t)
			env.fake.FailRandomly(1, fakemirakl.Hang(hold))
			env.clock.Advance(50 * time.Minute) // 9m59s left: below min_ttl, past the refresh point

			var readers []<-chan readResult
			if firstReader == "own min_ttl" {
				readers = append(readers, env.readAsyncWith(map[string]any{"min_ttl": "20m"}))
				waitFor(t, "the request started for the first reader", func() bool { return env.fake.Requests() == 2 })
			}
			for range 100 {
				readers = append(readers, env.readAsyncWith(nil))
			}
			readers = append(readers, env.readAsyncWith(map[string]any{"min_ttl": "20m"}))
			for i, ch := range readers {
				r := receive(t, fmt.Sprintf("read %d (Mirakl hangs; a valid token is cached)", i), ch)
				requireOK(t, r.resp, r.err)
				if r.resp.Data["access_token"] != first || len(r.resp.Warnings) != 1 || !strings.Contains(r.resp.Warnings[0], "min_ttl") {
					t.Fatalf("read %d: new token %v, warnings %v", i, r.resp.Data["access_token"] != first, r.resp.Warnings)
				}
			}
			// The refresh runs in the background: it may reach the fake after
			// the reads returned.
			waitFor(t, "the background refresh", func() bool { return env.fake.Requests() >= 2 })
			if got := env.fake.Requests(); got != 2 {
				t.Fatalf("%d requests, want the one refresh", got-1)
			}
		})
	}
}

// 2. A refusal holds, it does not stop: after ten seconds of refusals in the
// refresh window, Mirakl answers again, and the token is replaced long before
// it expires, without a failed read.
func TestARefusalHoldsItDoesNotStop(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	env.Configure(map[string]any{"verify": false, "request_timeout": "1s"})
	_, first := env.MustReadToken()
	env.clock.Advance(48 * time.Minute) // 11m59s left: the refresh is due
	env.fake.FailRandomly(1, fakemirakl.OAuthError(http.StatusUnauthorized, "invalid_client", "no"))
	env.MustReadToken()
	env.settle()
	requireRequests(t, env, 2, "after the refused refresh")
	env.clock.Advance(10 * time.Second)
	env.fake.FailRandomly(0, fakemirakl.Fault{})

	for tick := 1; ; tick++ {
		env.clock.Advance(10 * time.Second)
		if tick%6 == 0 {
			env.periodic()
		}
		resp, tok := env.MustReadToken()
		env.settle()
		if tok != first {
			if left := resp.Secret.TTL; left < 50*time.Minute {
				t.Fatalf("the new token has %s left", left)
			}
			break
		}
		if left := resp.Secret.TTL; left < 10*time.Minute {
			t.Fatalf("Mirakl answers again, and the token is still not replaced with %s left", left)
		}
	}
}

// 3. An outage is probed, not retried: the first request of an outage
// retries (it may be a blip), but once the gate has closed each admitted
// attempt is one HTTP request.
func TestAnOutageIsProbed(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	env.Configure(map[string]any{"verify": false, "request_timeout": "5s"})
	env.MustReadToken()
	env.clock.Advance(time.Hour) // expired
	env.miraklDown()
	for range 180 { // a read a second for three minutes
		resp, err := env.ReadToken(nil)
		requireStatus(t, resp, err, http.StatusBadGateway, "HTTP 503")
		env.clock.Advance(time.Second)
	}
	exchanges := env.ReadMetrics().must(metricTokenRequests, "outcome", "unavailable")
	if exchanges < 4 {
		t.Fatalf("three minutes of outage: %v attempts, want the gate's schedule (5s doubling to 1m)", exchanges)
	}
	// The first attempt made 5 HTTP requests (4 retries); every later one, 1.
	if got, want := env.fake.Requests()-1, int(exchanges)+4; got != want {
		t.Fatalf("%v attempts made %d HTTP requests, want %d", exchanges, got, want)
	}
}

// 4. A reader who hangs up during the first load after a restart does not
// make the mount forget its stored token; nor does one failed storage read:
// the load runs on the mount's context, and a failed restore is tried again.
func TestTheFirstLoadAfterARestartIsNotOneReadersToLose(t *testing.T) {
	t.Parallel()
	t.Run("the first reader hangs up", func(t *testing.T) {
		t.Parallel()
		env := newTestEnv(t)
		env.Configure(map[string]any{"verify": false})
		_, stored := env.MustReadToken()
		env.miraklDown()

		readerCtx, hangUp := context.WithCancel(context.Background())
		defer hangUp()
		entered := make(chan struct{})
		var once sync.Once
		var tokenGets atomic.Int32
		slow := &hookedStorage{InmemStorage: env.storage, beforeGet: func(ctx context.Context, key string) error {
			if key != tokenStorageKey {
				return nil
			}
			tokenGets.Add(1)
			once.Do(func() { close(entered) })
			hangUp() // the reader leaves while storage answers
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(20 * time.Millisecond):
				return nil
			}
		}}
		node := env.nodeOn(slow)
		first := make(chan readResult, 1)
		go func() {
			resp, err := readOn(readerCtx, node, slow, nil)
			first <- readResult{resp, err}
		}()
		receive(t, "the first read to reach the stored token", entered)
		receive(t, "the first read to end", first)
		resp, err := readOn(context.Background(), node, slow, nil)
		requireOK(t, resp, err)
		if resp.Data["access_token"] != stored {
			t.Fatal("the stored token was forgotten after the first reader hung up")
		}
		// The load ran on the mount's context: the reader's leaving did not
		// fail it (which a second look would have mended).
		if got := tokenGets.Load(); got != 1 {
			t.Fatalf("the stored token was read %d times, want once", got)
		}
	})
	t.Run("one storage read fails", func(t *testing.T) {
		t.Parallel()
		env := newTestEnv(t)
		env.Configure(map[string]any{"verify": false})
		_, stored := env.MustReadToken()
		env.miraklDown()
		var failed atomic.Bool
		flaky := &hookedStorage{InmemStorage: env.storage, beforeGet: func(_ context.Context, key string) error {
			if key == tokenStorageKey && failed.CompareAndSwap(false, true) {
				return errors.New("storage unavailable")
			}
			return nil
		}}
		node := env.nodeOn(flaky)
		_, _ = readOn(context.Background(), node, flaky, nil) // may fail: Mirakl is down too
		for i := range 3 {
			resp, err := readOn(context.Background(), node, flaky, nil)
			requireOK(t, resp, err)
			if resp.Data["access_token"] != stored {
				t.Fatalf("read %d: not the stored token", i)
			}
		}
	})
}

// Concurrent first reads after a restart build one state: one load of the
// config and of the stored token, the same token for all, no request.
func TestConcurrentFirstReadsBuildOneState(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	env.Configure(map[string]any{"verify": false})
	_, stored := env.MustReadToken()
	var configGets, tokenGets atomic.Int32
	counting := &hookedStorage{InmemStorage: env.storage, beforeGet: func(_ context.Context, key string) error {
		switch key {
		case configStorageKey:
			configGets.Add(1)
			time.Sleep(time.Millisecond) // widen the window in which readers meet
		case tokenStorageKey:
			tokenGets.Add(1)
		}
		return nil
	}}
	node := env.nodeOn(counting)
	var wg sync.WaitGroup
	tokens := make([]any, 20)
	for i := range tokens {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := readOn(context.Background(), node, counting, nil)
			if err == nil && resp != nil && !resp.IsError() {
				tokens[i] = resp.Data["access_token"]
			}
		}()
	}
	waitGroup(t, "the first reads", &wg)
	for i, tok := range tokens {
		if tok != stored {
			t.Fatalf("read %d did not get the stored token", i)
		}
	}
	if configGets.Load() != 1 || tokenGets.Load() != 1 {
		t.Fatalf("20 first reads loaded the config %d times and the token %d times, want once each", configGets.Load(), tokenGets.Load())
	}
	requireRequests(t, env, 1, "after the restart")
}

// Status answers from memory: after a restart, before any read, it shows no
// config loaded, and reads nothing from storage.
func TestStatusAfterARestartReadsNoStorage(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	env.Configure(nil)
	var gets atomic.Int32
	counting := &hookedStorage{InmemStorage: env.storage, beforeGet: func(context.Context, string) error { gets.Add(1); return nil }}
	node := env.nodeOn(counting)
	resp, err := node.HandleRequest(env.ctx, &logical.Request{Operation: logical.ReadOperation, Path: "status", Storage: counting, MountPoint: "mirakl/"})
	requireOK(t, resp, err)
	if resp.Data["config_loaded"] != false || gets.Load() != 0 {
		t.Fatalf("status after a restart: config_loaded %v, %d storage reads", resp.Data["config_loaded"], gets.Load())
	}
}

// 5. One check at hand-out: a token that expired while its reader waited
// for storage is never handed out.
func TestAnExpiredTokenIsNeverHandedOut(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t, fakemirakl.WithExpiresIn(5))
	slow := &hookedStorage{InmemStorage: env.storage, beforePut: func(_ context.Context, key string) error {
		if key == tokenStorageKey {
			env.clock.Advance(6 * time.Second) // storage takes longer than the token lives
		}
		return nil
	}}
	env.Configure(map[string]any{"verify": false})
	node := env.nodeOn(slow)
	for i := range 3 {
		resp, err := readOn(env.ctx, node, slow, nil)
		if err != nil || resp.IsError() {
			continue // no token is an answer; an expired one is not
		}
		expiresAt, _ := time.Parse(time.RFC3339, resp.Data["expires_at"].(string))
		if !expiresAt.After(env.clock.Now()) {
			t.Fatalf("read %d handed out a token that expired at %s, at %s", i, expiresAt, env.clock.Now())
		}
	}
}

// 6. A restored token never has more life than it was issued with: an entry
// stored by a node whose clock ran 30 minutes ahead.
func TestARestoredTokenNeverOutlivesItsLifetime(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	env.Configure(map[string]any{"verify": false})
	_, stored := env.MustReadToken()
	var entry map[string]any
	if err := json.Unmarshal(env.rawStoredToken(), &entry); err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{"issued_at", "expires_at"} {
		at, err := time.Parse(time.RFC3339Nano, entry[field].(string))
		if err != nil {
			t.Fatal(err)
		}
		entry[field] = at.Add(30 * time.Minute)
	}
	skewed, _ := json.Marshal(entry)
	env.putStoredToken(skewed)
	env.restart()
	env.miraklDown()
	resp, tok := env.MustReadToken()
	if tok != stored || resp.Secret.TTL > 3599*time.Second || resp.Data["expires_in"].(int64) > 3599 {
		t.Fatalf("restored token %v under a lease of %s, expires_in %v, for a token issued for 3599s", tok == stored, resp.Secret.TTL, resp.Data["expires_in"])
	}
}

// 7. The gate's holds follow the one clock rule: a hold ends when either
// clock says so (a host suspend stops the monotonic one), and a wall clock
// stepped back neither lengthens it nor a token's life.
func TestHoldsAndTokensReadBothClocks(t *testing.T) {
	t.Parallel()
	configured := func(t *testing.T) (*suspendableClock, *fakemirakl.Server, func(op logical.Operation, path string, data map[string]any) (*logical.Response, error)) {
		se := newSuspendableEnv(t)
		se.b.retries = retryPolicy{MaxRetries: 0}
		resp, err := se.request(logical.UpdateOperation, "config", map[string]any{"client_id": testClientID, "client_secret": testClientSecret, "token_url": se.fake.TokenURL(), "verify": false})
		requireOK(t, resp, err)
		return se.clock, se.fake, func(op logical.Operation, path string, data map[string]any) (*logical.Response, error) {
			return se.request(op, path, data)
		}
	}
	t.Run("a suspend longer than a hold", func(t *testing.T) {
		t.Parallel()
		clock, fake, request := configured(t)
		fake.FailRandomly(1, fakemirakl.RateLimited("300"))
		resp, err := request(logical.ReadOperation, "token", nil)
		requireStatus(t, resp, err, http.StatusBadGateway, "HTTP 429")
		fake.FailRandomly(0, fakemirakl.Fault{})
		clock.Suspend(2 * time.Hour)
		status, err := request(logical.ReadOperation, "status", nil)
		requireOK(t, status, err)
		if status.Data["requests_held"] != false || status.Data["next_attempt"] != nil {
			t.Fatalf("two hours after a five-minute hold: requests_held %v, next_attempt %v", status.Data["requests_held"], status.Data["next_attempt"])
		}
		resp, err = request(logical.ReadOperation, "token", nil)
		requireOK(t, resp, err)
	})
	t.Run("a wall clock stepped back", func(t *testing.T) {
		t.Parallel()
		clock, fake, request := configured(t)
		first, err := request(logical.ReadOperation, "token", nil)
		requireOK(t, first, err)
		clock.Suspend(-30 * time.Minute) // the wall clock steps back; the monotonic one goes on
		clock.Advance(3600 * time.Second)
		second, err := request(logical.ReadOperation, "token", nil)
		requireOK(t, second, err)
		if second.Data["access_token"] == first.Data["access_token"] {
			t.Fatal("an hour after it was issued, with the wall clock stepped back, the expired token was served")
		}
		fake.FailRandomly(1, fakemirakl.HTMLError(503))
		clock.Advance(time.Hour)
		resp, err := request(logical.ReadOperation, "token", nil)
		requireStatus(t, resp, err, http.StatusBadGateway, "HTTP 503")
		clock.Suspend(-time.Hour)
		clock.Advance(6 * time.Second) // past the first backoff (at most 5s) by the monotonic clock
		fake.FailRandomly(0, fakemirakl.Fault{})
		resp, err = request(logical.ReadOperation, "token", nil)
		requireOK(t, resp, err)
	})
}

// 8. A request cancelled by a config change is counted as cancelled,
// through the path that cancels it: not as an error, and not as a failure
// that feeds the alerts.
func TestACancelledRequestIsCountedAsCancelled(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	env.Configure(map[string]any{"verify": false, "request_timeout": "5m"})
	hold, _ := releaser(t)
	env.fake.Enqueue(fakemirakl.Hang(hold))
	reading := env.readAsync(env.ctx)
	waitFor(t, "the request to reach Mirakl", func() bool { return env.fake.Requests() == 1 })
	env.Configure(map[string]any{"verify": false, "min_ttl": "5m"}) // cancels it
	requireOK(t, receive(t, "the read across the config change", reading).resp, nil)
	env.ReadMetrics().expect("after the config change", map[string]float64{
		`mirakl_token_requests_total{outcome="cancelled"}`: 1,
		`mirakl_token_requests_total{outcome="error"}`:     0,
		`mirakl_token_requests_total{outcome="token"}`:     1,
	})
}

// "error" is reachable too: our own failure to build the request.
func TestOwnFailureIsCountedAsError(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	env.Configure(map[string]any{"verify": false})
	mount, err := env.backend.currentMount(env.ctx, env.storage)
	if err != nil {
		t.Fatal(err)
	}
	mount.client.tokenURL = "http://127.0.0.1:1/%zz" // what validateTokenURL never lets through
	resp, err := env.ReadToken(nil)
	if err == nil || resp != nil {
		t.Fatalf("want an internal error, got %v, %v", resp, err)
	}
	env.ReadMetrics().expect("after the failure", map[string]float64{`mirakl_token_requests_total{outcome="error"}`: 1})
	if got := env.ReadStatus()["last_request_outcome"]; got != "error" {
		t.Fatalf("status: last_request_outcome %v", got)
	}
}

// 9. Redaction cannot be outrun: the secret leaves Mirakl's
// error_description before the text is cut or normalised.
func TestRedactionCannotBeOutrun(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("L0ng-secret-", 85) // 1020 bytes
	spaced := "spaced   secret  with runs-" + strings.Repeat("x", 30)
	for name, secret := range map[string]string{"a secret of 1020 bytes": long, "a secret with a run of spaces": spaced} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			env := newTestEnv(t)
			env.fake.Enqueue(fakemirakl.OAuthError(http.StatusUnauthorized, "invalid_client", "client_secret "+secret+" is not valid"))
			resp, err := env.WriteConfig(map[string]any{"client_id": testClientID, "client_secret": secret, "token_url": env.fake.TokenURL()})
			requireUserError(t, resp, err, "invalid_client")
			shown := resp.Error().Error()
			for _, spelling := range []string{secret[:24], normaliseText(secret)[:24]} {
				if strings.Contains(shown, spelling) {
					t.Fatalf("the secret shows through redaction: %q", shown)
				}
			}
			if !strings.Contains(shown, "[redacted]") {
				t.Fatalf("the description was not shown, redacted: %q", shown)
			}
		})
	}
}

// 10. Every byte from outside is bounded, headers too: an answer, or a
// proxy's answer to CONNECT, with 9 MiB of headers (under Go's 10 MiB
// default) is not read to its end.
func TestResponseHeadersAreBounded(t *testing.T) {
	t.Parallel()
	for _, via := range []string{"the token endpoint", "a proxy's CONNECT answer"} {
		t.Run(via, func(t *testing.T) {
			t.Parallel()
			server := newHugeHeaderServer(t)
			env := newTestEnv(t)
			tokenURL := "http://" + server.addr + "/oauth/token"
			if via != "the token endpoint" {
				tokenURL = "https://127.0.0.1:9/oauth/token" // reached only through the proxy
			}
			env.Configure(map[string]any{"verify": false, "token_url": tokenURL, "request_timeout": "10s"})
			if via != "the token endpoint" {
				mount, err := env.backend.currentMount(env.ctx, env.storage)
				if err != nil {
					t.Fatal(err)
				}
				mount.client.http.HTTPClient.Transport.(*http.Transport).Proxy = http.ProxyURL(&url.URL{Scheme: "http", Host: server.addr})
			}
			resp, err := env.ReadToken(nil)
			requireStatus(t, resp, err, http.StatusBadGateway, "Mirakl")
			waitFor(t, "the server to finish or fail writing", func() bool { return server.done.Load() })
			if server.wroteAll.Load() {
				t.Fatal("the client read 9 MiB of headers")
			}
		})
	}
}

type hugeHeaderServer struct {
	addr     string
	done     atomic.Bool
	wroteAll atomic.Bool
}

// newHugeHeaderServer answers each request (a token request or a CONNECT)
// with 200 and 9 MiB of headers, and records whether the client read them.
func newHugeHeaderServer(t *testing.T) *hugeHeaderServer {
	t.Helper()
	s := &hugeHeaderServer{}
	s.addr = rawListener(t, func(conn net.Conn, req *http.Request) {
		_, _ = io.Copy(io.Discard, req.Body)
		w := bufio.NewWriterSize(conn, 64<<10)
		_, _ = w.WriteString("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
		pad := strings.Repeat("p", 1000)
		var failed error
		for i := 0; i < 9*1024 && failed == nil; i++ {
			_, failed = fmt.Fprintf(w, "X-Pad-%d: %s\r\n", i, pad)
		}
		if failed == nil {
			body := `{"access_token":"tok-LEAKCHECK-huge","token_type":"Bearer","expires_in":3600}`
			_, failed = fmt.Fprintf(w, "Content-Length: %d\r\n\r\n%s", len(body), body)
		}
		if failed == nil {
			failed = w.Flush()
		}
		s.wroteAll.Store(failed == nil)
		s.done.Store(true)
	})
	return s
}

// 11. The same token again keeps its original lifetime: behind a gateway
// that answers with the token it cached, expires_in counting down, until
// it has 20 seconds left, readers are served throughout three lifetimes, and
// Mirakl is asked a handful of times per token.
func TestTheSameTokenAgainKeepsItsLifetime(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	gateway := &cachingGateway{upstream: env.fake, now: env.clock.Now, margin: 20 * time.Second}
	gatewayURL := newLoopbackServer(t, gateway) + fakemirakl.TokenPath
	env.Configure(map[string]any{"verify": false, "token_url": gatewayURL})
	seen := map[any]bool{}
	for tick := 0; tick < 3*360; tick++ { // a read every 10s for three hours
		resp, tok := env.MustReadToken()
		seen[tok] = true
		if !strings.HasPrefix(tok, testTokenPrefix) || resp.Secret.TTL < time.Second {
			t.Fatalf("tick %d: lease %s", tick, resp.Secret.TTL)
		}
		env.settle()
		if tick%6 == 0 {
			env.periodic()
		}
		// The token keeps the lifetime it was issued with, however often
		// the gateway answers with it, expires_in counting down.
		status := env.ReadStatus()
		issued, _ := time.Parse(time.RFC3339, status["token_issued_at"].(string))
		expires, _ := time.Parse(time.RFC3339, status["token_expires_at"].(string))
		if lifetime := expires.Sub(issued); lifetime < 3598*time.Second {
			t.Fatalf("tick %d: the cached token's lifetime is %s after the gateway answered with it again", tick, lifetime)
		}
		env.clock.Advance(10 * time.Second)
	}
	tokens, asked := len(seen), int(gateway.asked.Load())
	if tokens < 3 || asked > 8*tokens {
		t.Fatalf("%d tokens in three hours, and the gateway was asked %d times (want at most 8 a token)", tokens, asked)
	}
}

// cachingGateway stands between the engine and Mirakl as some API gateways
// do: it fetches a token once and answers every request with it, expires_in
// counting down, until it has margin left.
type cachingGateway struct {
	upstream *fakemirakl.Server
	now      func() time.Time
	margin   time.Duration
	asked    atomic.Int32

	mu        sync.Mutex
	token     string
	expiresAt time.Time
}

func (g *cachingGateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.asked.Add(1)
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	if g.token == "" || g.expiresAt.Sub(now) < g.margin {
		body, _ := io.ReadAll(r.Body)
		forward, _ := http.NewRequestWithContext(r.Context(), http.MethodPost, g.upstream.TokenURL(), strings.NewReader(string(body)))
		forward.Header = r.Header.Clone()
		resp, err := http.DefaultClient.Do(forward)
		if err != nil {
			http.Error(w, "upstream", http.StatusBadGateway)
			return
		}
		defer func() { _ = resp.Body.Close() }()
		var answer struct {
			AccessToken string `json:"access_token"`
			ExpiresIn   int    `json:"expires_in"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil || answer.AccessToken == "" {
			http.Error(w, "upstream", http.StatusBadGateway)
			return
		}
		g.token, g.expiresAt = answer.AccessToken, now.Add(time.Duration(answer.ExpiresIn)*time.Second)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"access_token": g.token, "token_type": "Bearer", "expires_in": int(g.expiresAt.Sub(now).Seconds())})
}

// A token storage write honours the mount's end: with storage hanging, an
// unmount does not wait behind the write.
func TestUnmountDoesNotWaitBehindAHungTokenWrite(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	env.Configure(map[string]any{"verify": false})
	writing := make(chan struct{})
	var once sync.Once
	hung := &hookedStorage{InmemStorage: env.storage, beforePut: func(ctx context.Context, key string) error {
		if key != tokenStorageKey {
			return nil
		}
		once.Do(func() { close(writing) })
		<-ctx.Done() // storage that answers only when told to give up
		return ctx.Err()
	}}
	node := env.nodeOn(hung)
	reading := make(chan readResult, 1)
	go func() {
		resp, err := readOn(env.ctx, node, hung, nil)
		reading <- readResult{resp, err}
	}()
	receive(t, "the new token's storage write", writing)
	cleanupWithin(t, node)
	receive(t, "the read to end", reading)
}

// A config delete is serialised with a config write: a delete sent while a
// write checks its credentials waits for it, and the config is gone after.
func TestConfigDeleteWaitsForAConfigWrite(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	env.Configure(map[string]any{"verify": false})
	hold, release := releaser(t)
	env.fake.Enqueue(fakemirakl.Hang(hold))
	writing := make(chan readResult, 1)
	go func() {
		resp, err := env.request(logical.UpdateOperation, "config", map[string]any{"min_ttl": "5m"}) // verify: held at Mirakl
		writing <- readResult{resp, err}
	}()
	waitFor(t, "the write's check to reach Mirakl", func() bool { return env.fake.Requests() == 1 })
	deleting := make(chan readResult, 1)
	go func() {
		resp, err := env.DeleteConfig()
		deleting <- readResult{resp, err}
	}()
	select {
	case <-deleting:
		t.Fatal("the delete returned while a config write was under way")
	case <-time.After(100 * time.Millisecond):
	}
	release()
	w := receive(t, "the write", writing)
	requireOK(t, w.resp, w.err)
	d := receive(t, "the delete", deleting)
	requireOK(t, d.resp, d.err)
	if env.ConfigExists() {
		t.Fatal("the config is back after its delete")
	}
	resp, err := env.ReadToken(nil)
	requireUserError(t, resp, err, "not configured")
}

// A config write whose save fails leaves nothing behind: its client's
// connections to Mirakl are closed.
func TestAFailedConfigSaveClosesItsConnections(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	failing := &hookedStorage{InmemStorage: env.storage, beforePut: func(_ context.Context, key string) error {
		if key == configStorageKey {
			return errors.New("storage unavailable")
		}
		return nil
	}}
	resp, err := env.backend.HandleRequest(env.ctx, &logical.Request{Operation: logical.CreateOperation, Path: "config", Storage: failing, MountPoint: "mirakl/",
		Data: map[string]any{"client_id": testClientID, "client_secret": testClientSecret, "token_url": env.fake.TokenURL()}})
	if err == nil || !strings.Contains(err.Error(), "storing config") {
		t.Fatalf("want the storage error, got %v, %v", resp, err)
	}
	requireRequests(t, env, 1, "the write's check")
	waitFor(t, "the check's connection to close", func() bool { return env.fake.OpenConnections() == 0 })
}
