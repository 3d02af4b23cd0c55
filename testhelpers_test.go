package mirakl

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/fakemirakl"
)

const (
	testClientID     = "test-client-id"
	testClientSecret = "s3cr3t-CLIENT-secret-7f3a9c" // distinctive, so leak checks can look for it
	testTokenPrefix  = "tok-LEAKCHECK-"
)

// testClock is the engine's clock in tests: time moves only when a test says so.
type testClock struct {
	mu  sync.Mutex
	now time.Time
	// step passes each time the engine reads the clock, as time passes while
	// a busy machine works through a request.
	step time.Duration
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now
	c.now = c.now.Add(c.step)
	return now
}

// PassEachRead makes step pass each time the engine reads the clock (0: frozen).
func (c *testClock) PassEachRead(step time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.step = step
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// syncBuffer collects plugin logs from concurrent goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// testEnv is one mount with its storage, clock, logs and fake Mirakl; its
// methods read like a user's session.
type testEnv struct {
	t       *testing.T
	ctx     context.Context
	backend *backend
	storage *logical.InmemStorage
	clock   *testClock
	fake    *fakemirakl.Server
	logs    *syncBuffer
}

func newTestEnv(t *testing.T, fakeOpts ...fakemirakl.Option) *testEnv {
	t.Helper()
	fake := fakemirakl.New(testClientID, testClientSecret, append([]fakemirakl.Option{fakemirakl.WithTokenPrefix(testTokenPrefix)}, fakeOpts...)...)
	t.Cleanup(fake.Close)
	return newTestEnvWithFake(t, fake)
}

func newTestEnvWithFake(t *testing.T, fake *fakemirakl.Server) *testEnv {
	t.Helper()
	logs := &syncBuffer{}
	storage := &logical.InmemStorage{}
	config := logical.TestBackendConfig()
	config.StorageView = storage
	config.Logger = hclog.New(&hclog.LoggerOptions{Level: hclog.Trace, Output: logs})

	clock := &testClock{now: time.Date(2026, 11, 28, 11, 0, 0, 0, time.UTC)}
	b, err := newBackend(context.Background(), config, clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	b.retries = retryPolicy{MaxRetries: 4, WaitMin: 5 * time.Millisecond, WaitMax: 50 * time.Millisecond}
	// Cleanups run last first: the mount ends (and its background requests
	// with it) before the fake's record is checked.
	t.Cleanup(func() { requireNoViolations(t, fake) })
	t.Cleanup(func() { cleanupWithin(t, b) })
	return &testEnv{t: t, ctx: context.Background(), backend: b, storage: storage, clock: clock, fake: fake, logs: logs}
}

func (e *testEnv) request(op logical.Operation, path string, data map[string]any) (*logical.Response, error) {
	return e.backend.HandleRequest(e.ctx, &logical.Request{
		Operation:  op,
		Path:       path,
		Data:       data,
		Storage:    e.storage,
		MountPoint: "mirakl/",
	})
}

// Configure writes a valid config pointing at the fake, with extra fields on top.
func (e *testEnv) Configure(extra map[string]any) {
	e.t.Helper()
	data := map[string]any{"client_id": testClientID, "client_secret": testClientSecret, "token_url": e.fake.TokenURL()}
	for k, v := range extra {
		data[k] = v
	}
	resp, err := e.WriteConfig(data)
	requireOK(e.t, resp, err)
}

// WriteConfig creates or updates the config, as Vault's router decides: by
// the path's existence check.
func (e *testEnv) WriteConfig(data map[string]any) (*logical.Response, error) {
	op := logical.CreateOperation
	if e.ConfigExists() {
		op = logical.UpdateOperation
	}
	return e.request(op, "config", data)
}

func (e *testEnv) ConfigExists() bool {
	e.t.Helper()
	checked, exists, err := e.backend.HandleExistenceCheck(e.ctx, &logical.Request{Operation: logical.UpdateOperation, Path: "config", Storage: e.storage})
	if err != nil || !checked {
		e.t.Fatalf("existence check of config: checked %v, error %v", checked, err)
	}
	return exists
}

func (e *testEnv) ReadConfig() (*logical.Response, error) {
	return e.request(logical.ReadOperation, "config", nil)
}

func (e *testEnv) DeleteConfig() (*logical.Response, error) {
	return e.request(logical.DeleteOperation, "config", nil)
}

func (e *testEnv) ReadToken(data map[string]any) (*logical.Response, error) {
	return e.request(logical.ReadOperation, "token", data)
}

// MustReadToken reads a token and returns its response and access token.
func (e *testEnv) MustReadToken() (*logical.Response, string) {
	e.t.Helper()
	resp, err := e.ReadToken(nil)
	requireOK(e.t, resp, err)
	return resp, resp.Data["access_token"].(string)
}

func (e *testEnv) RevokeLease(resp *logical.Response) (*logical.Response, error) {
	return e.backend.HandleRequest(e.ctx, &logical.Request{Operation: logical.RevokeOperation, Secret: resp.Secret, Storage: e.storage})
}

func (e *testEnv) RenewLease(resp *logical.Response) (*logical.Response, error) {
	secret := *resp.Secret // as Vault does, from the lease it stored
	return e.backend.HandleRequest(e.ctx, &logical.Request{Operation: logical.RenewOperation, Secret: &secret, Storage: e.storage, MountPoint: "mirakl/"})
}

func requireOK(t *testing.T, resp *logical.Response, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	if resp != nil && resp.IsError() {
		t.Fatalf("unexpected error response: %v", resp.Error())
	}
}

// requireData compares a whole response map, so that a field added, lost or
// changed shows.
func requireData(t *testing.T, what string, got, want map[string]any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\n got %#v\nwant %#v", what, got, want)
	}
}

// requireUserError asserts a 400: an error response that mentions want, and no error.
func requireUserError(t *testing.T, resp *logical.Response, err error, want string) {
	t.Helper()
	if err != nil {
		t.Fatalf("want an error response, got error %v", err)
	}
	if resp == nil || !resp.IsError() {
		t.Fatalf("want an error response, got %#v", resp)
	}
	if !strings.Contains(resp.Error().Error(), want) {
		t.Fatalf("error %q does not mention %q", resp.Error(), want)
	}
}

// requireStatus asserts an error that Vault turns into the given HTTP status.
func requireStatus(t *testing.T, resp *logical.Response, err error, status int, want string) {
	t.Helper()
	// What Vault's HTTP layer does with a handler's answer.
	got, _ := logical.RespondErrorCommon(&logical.Request{Operation: logical.ReadOperation}, resp, err)
	logical.AdjustErrorStatusCode(&got, err)
	if got != status {
		t.Fatalf("want HTTP %d, got %d (resp %#v, err %v)", status, got, resp, err)
	}
	msg := ""
	if err != nil {
		msg = err.Error()
	} else if resp != nil && resp.IsError() {
		msg = resp.Error().Error()
	}
	if !strings.Contains(msg, want) {
		t.Fatalf("error %q does not mention %q", msg, want)
	}
}

// visibleTexts is everything a caller could see of an answer, as text: the
// error, the error response, and the data, warnings and lease, without the
// access_token of a token read (the one place a token belongs).
func visibleTexts(resp *logical.Response, err error, tokenRead bool) []string {
	var texts []string
	if err != nil {
		texts = append(texts, err.Error())
	}
	if resp == nil {
		return texts
	}
	if resp.IsError() {
		texts = append(texts, resp.Error().Error())
	}
	data := make(map[string]any, len(resp.Data))
	for k, v := range resp.Data {
		if k != "access_token" || !tokenRead {
			data[k] = v
		}
	}
	raw, _ := json.Marshal(struct {
		Data     map[string]any
		Warnings []string
		Secret   *logical.Secret
	}{data, resp.Warnings, resp.Secret})
	return append(texts, string(raw))
}

// serialized is everything a client could see of a response.
func serialized(t *testing.T, resp *logical.Response) string {
	t.Helper()
	raw, err := json.Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

// recordingHandler keeps the last request it passed on.
type recordingHandler struct {
	next http.Handler
	seen **http.Request
}

func (h *recordingHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	*h.seen = r.Clone(r.Context())
	h.next.ServeHTTP(w, r)
}

func newLoopbackServer(t *testing.T, h http.Handler) string {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s.URL
}

// forgetToken drops the cached token, so that the next read fetches.
func (b *backend) forgetToken() {
	if mount := b.loadedMount(); mount != nil {
		mount.defaultToken.cache.mu.Lock()
		mount.defaultToken.cache.token = nil
		mount.defaultToken.cache.mu.Unlock()
	}
}

// waitDeadline bounds every wait of the tests: long enough for a loaded
// machine, short enough that a test that would hang fails instead, saying
// what it waited for.
const waitDeadline = 10 * time.Second

// settle waits for the requests that reads or the periodic function started.
func (e *testEnv) settle() {
	e.t.Helper()
	if mount := e.backend.loadedMount(); mount != nil {
		mount.eachSource(func(src *tokenSource) {
			waitGroup(e.t, "the mount's requests to end", &src.cache.running)
		})
	}
}

// waitGroup waits for wg, failing the test after waitDeadline.
func waitGroup(t testing.TB, what string, wg *sync.WaitGroup) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	receive(t, what, done)
}

// receive returns the next value from ch (or its close), failing the test
// after waitDeadline.
func receive[T any](t testing.TB, what string, ch <-chan T) T {
	t.Helper()
	timer := time.NewTimer(waitDeadline)
	defer timer.Stop()
	select {
	case v := <-ch:
		return v
	case <-timer.C:
		t.Fatalf("timed out after %s waiting for %s", waitDeadline, what)
		panic("unreachable")
	}
}

// cleanupWithin ends a mount as Vault does (Cleanup, through the framework),
// failing the test if that does not return within waitDeadline.
func cleanupWithin(t testing.TB, b logical.Backend) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		b.Cleanup(context.Background())
		close(done)
	}()
	receive(t, "the mount's Cleanup to return (its background requests to end)", done)
}

// requireNoViolations fails the test if the fake saw a request that Mirakl
// would refuse as malformed (a test that sends one on purpose takes it with
// TakeViolations).
func requireNoViolations(t testing.TB, fake *fakemirakl.Server) {
	t.Helper()
	if v := fake.Violations(); len(v) > 0 {
		t.Errorf("the fake Mirakl saw requests that Mirakl would refuse:\n%s", strings.Join(v, "\n"))
	}
}

// secretSpellings is the secret as an echoing server could send it back.
func secretSpellings(secret string) []string {
	jsonEscaped, _ := json.Marshal(secret)
	return []string{
		secret,
		url.QueryEscape(secret),
		strings.ToLower(url.QueryEscape(secret)),
		url.PathEscape(secret),
		strings.Trim(string(jsonEscaped), `"`),
		html.EscapeString(secret),
		base64.StdEncoding.EncodeToString([]byte(secret)),
	}
}
