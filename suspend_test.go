package mirakl

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/fakemirakl"
)

// suspendableClock reads like time.Now, with a monotonic reading, and can
// pass time the way a host suspend does: the wall clock moves, Go's
// monotonic clock (CLOCK_MONOTONIC on Linux) does not.
type suspendableClock struct {
	mu        sync.Mutex
	base      time.Time // carries a monotonic reading
	elapsed   time.Duration
	suspended time.Duration
}

func (c *suspendableClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return withMonotonicBehind(c.base.Add(c.elapsed+c.suspended), c.suspended)
}

func (c *suspendableClock) Advance(d time.Duration) { c.mu.Lock(); c.elapsed += d; c.mu.Unlock() }
func (c *suspendableClock) Suspend(d time.Duration) { c.mu.Lock(); c.suspended += d; c.mu.Unlock() }

// withMonotonicBehind moves t's monotonic reading back by d and leaves its
// wall clock: no exported API makes such a time, which only a suspend does.
func withMonotonicBehind(t time.Time, d time.Duration) time.Time {
	type timeLayout struct { // time.Time's fields, as of Go 1.9 to today
		wall uint64
		ext  int64 // the monotonic reading, when wall's top bit says there is one
		loc  *time.Location
	}
	fields := (*timeLayout)(unsafe.Pointer(&t)) //nolint:gosec // G103: a test-only way to make the time a suspended host reads
	fields.ext -= int64(d)
	return t
}

func TestSuspendableClockIsWhatASuspendLooksLike(t *testing.T) {
	t.Parallel()
	clock := &suspendableClock{base: time.Now()}
	before := clock.Now()
	clock.Suspend(2 * time.Hour)
	clock.Advance(time.Second)
	after := clock.Now()
	if mono, wall := after.Sub(before), after.Round(0).Sub(before.Round(0)); mono != time.Second || wall != 2*time.Hour+time.Second {
		t.Fatalf("after a 2h suspend and 1s: monotonic %s, wall %s (has time.Time's layout changed?)", mono, wall)
	}
}

// suspendableEnv is one mount on a suspendableClock, with its fake and storage.
type suspendableEnv struct {
	clock   *suspendableClock
	fake    *fakemirakl.Server
	storage *logical.InmemStorage
	b       *backend
}

func newSuspendableEnv(t *testing.T, fakeOpts ...fakemirakl.Option) *suspendableEnv {
	t.Helper()
	fake := fakemirakl.New(testClientID, testClientSecret, append([]fakemirakl.Option{fakemirakl.WithTokenPrefix(testTokenPrefix)}, fakeOpts...)...)
	t.Cleanup(fake.Close)
	storage := &logical.InmemStorage{}
	config := logical.TestBackendConfig()
	config.StorageView = storage
	config.Logger = hclog.NewNullLogger()
	clock := &suspendableClock{base: time.Now()}
	b, err := newBackend(context.Background(), config, clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cleanupWithin(t, b) })
	return &suspendableEnv{clock: clock, fake: fake, storage: storage, b: b}
}

func (e *suspendableEnv) request(op logical.Operation, path string, data map[string]any) (*logical.Response, error) {
	return e.b.HandleRequest(context.Background(), &logical.Request{Operation: op, Path: path, Data: data, Storage: e.storage, MountPoint: "mirakl/"})
}

func (e *suspendableEnv) requestSecret(op logical.Operation, secret *logical.Secret) (*logical.Response, error) {
	return e.b.HandleRequest(context.Background(), &logical.Request{Operation: op, Secret: secret, Storage: e.storage, MountPoint: "mirakl/"})
}

// After a host suspend longer than the token's life, a read neither serves
// the expired token nor a lease past its expiry, and its renewal agrees.
func TestTokenLifeSurvivesAHostSuspend(t *testing.T) {
	t.Parallel()
	se := newSuspendableEnv(t)
	fake, clock := se.fake, se.clock
	request := func(op logical.Operation, path string, data map[string]any) *logical.Response {
		t.Helper()
		resp, err := se.request(op, path, data)
		requireOK(t, resp, err)
		return resp
	}
	request(logical.UpdateOperation, "config", map[string]any{"client_id": testClientID, "client_secret": testClientSecret, "token_url": fake.TokenURL(), "verify": false})
	first := request(logical.ReadOperation, "token", nil)

	clock.Suspend(2 * time.Hour)
	resp, err := se.requestSecret(logical.RenewOperation, first.Secret)
	requireStatus(t, resp, err, http.StatusBadRequest, "has expired")
	second := request(logical.ReadOperation, "token", nil)
	if second.Data["access_token"] == first.Data["access_token"] {
		t.Fatalf("after a 2h suspend the hour-long token was served again, expires_at %v, lease %s", second.Data["expires_at"], second.Secret.TTL)
	}
	expiresAt, _ := time.Parse(time.RFC3339, second.Data["expires_at"].(string))
	if leaseEnd := clock.Now().Round(0).Add(second.Secret.TTL); leaseEnd.After(expiresAt.Add(time.Second)) {
		t.Fatalf("lease ends %s, token %s", leaseEnd, expiresAt)
	}
	if got := fake.Requests(); got != 2 {
		t.Fatalf("%d requests, want 2", got)
	}
}
