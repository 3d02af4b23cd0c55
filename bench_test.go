package mirakl

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/callcount"
	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/fakemirakl"
)

// The in-process benchmarks measure the engine alone, through HandleRequest
// as Vault's plugin server calls it: no gRPC, no HTTP, no lease bookkeeping.
// `make bench` runs them with -benchmem and puts them in its table; they never
// assert a figure.

// benchMount is one configured mount and the fake it talks to. Its storage
// and system view count the calls the engine makes into Vault: in a real
// plugin each is a gRPC round trip to the server.
type benchMount struct {
	backend *backend
	storage logical.Storage
	fake    *fakemirakl.Server
	calls   *callcount.Counter
}

// newBenchMount configures a mount against a fake on 127.0.0.1. With verify
// on (the default of a config write) the write seeds the token cache, so the
// first read is already a cached one.
func newBenchMount(tb testing.TB) *benchMount {
	tb.Helper()
	return newBenchMountOn(tb, time.Now)
}

// newBenchMountOn is newBenchMount on the engine clock now, with the fake's
// options (fakemirakl.WithAudiences for roles).
func newBenchMountOn(tb testing.TB, now func() time.Time, fakeOpts ...fakemirakl.Option) *benchMount {
	tb.Helper()
	fake := fakemirakl.New(testClientID, testClientSecret, fakeOpts...)
	tb.Cleanup(fake.Close)

	calls := &callcount.Counter{}
	config := logical.TestBackendConfig()
	config.StorageView = &logical.InmemStorage{}
	// Logs are not what is measured; Vault filters them by level the same way.
	config.Logger = hclog.NewNullLogger()
	config = callcount.Config(config, calls)
	b, err := newBackend(context.Background(), config, now)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { requireNoViolations(tb, fake) })
	tb.Cleanup(func() { cleanupWithin(tb, b) })
	m := &benchMount{backend: b, storage: config.StorageView, fake: fake, calls: calls}
	resp, err := m.request(logical.CreateOperation, "config", map[string]any{
		"client_id": testClientID, "client_secret": testClientSecret, "token_url": fake.TokenURL(),
	})
	if err != nil || resp.IsError() {
		tb.Fatalf("configuring the mount: %v %v", resp, err)
	}
	return m
}

func (m *benchMount) request(op logical.Operation, path string, data map[string]any) (*logical.Response, error) {
	return m.backend.HandleRequest(context.Background(), &logical.Request{
		Operation:  op,
		Path:       path,
		Data:       data,
		Storage:    m.storage,
		MountPoint: "mirakl/",
	})
}

// readToken reads mirakl/token and says what went wrong, if anything.
func (m *benchMount) readToken() error {
	resp, err := m.request(logical.ReadOperation, "token", nil)
	switch {
	case err != nil:
		return err
	case resp == nil || resp.Secret == nil:
		return fmt.Errorf("no lease in %#v", resp)
	case resp.IsError():
		return resp.Error()
	}
	return nil
}

func (m *benchMount) mustReadToken(tb testing.TB) {
	tb.Helper()
	if err := m.readToken(); err != nil {
		tb.Fatalf("reading a token: %v", err)
	}
}

// reportCalls reports the calls into Vault per read since the counter's reset.
func (m *benchMount) reportCalls(b *testing.B, reads int) {
	b.ReportMetric(float64(m.calls.Total())/float64(reads), "vault-calls/op")
}

// BenchmarkTokenReadCached is the hot path: a read served from the cache.
func BenchmarkTokenReadCached(b *testing.B) {
	m := newBenchMount(b)
	m.mustReadToken(b)
	before := m.fake.Requests()
	m.calls.Reset()
	b.ReportAllocs()
	reads := 0
	for b.Loop() {
		m.mustReadToken(b)
		reads++
	}
	b.StopTimer()
	m.reportCalls(b, reads)
	if got := m.fake.Requests() - before; got != 0 {
		b.Fatalf("cached reads made %d requests to the fake", got)
	}
}

// TestCachedReadCallsIntoVault pins the rule that a cached read touches no
// storage, and logs the system-view calls it makes: each is a gRPC round trip
// in a real plugin. The SDK's framework makes one (ReplicationState) for any
// operation of any plugin; more than that is the engine's own.
func TestCachedReadCallsIntoVault(t *testing.T) {
	m := newBenchMount(t)
	m.mustReadToken(t)
	m.calls.Reset()
	m.mustReadToken(t)
	calls := m.calls.Snapshot()
	t.Logf("calls into Vault by one cached read: %v", calls)
	for name, n := range calls {
		switch {
		case strings.HasPrefix(name, "storage."):
			t.Errorf("a cached read called %s %d times; the config must stay in memory", name, n)
		case name != "system.ReplicationState":
			t.Errorf("a cached read called %s %d times; the SDK's ReplicationState is the only call any plugin makes", name, n)
		}
	}
}

// BenchmarkTokenReadCachedParallel is the hot path under contention: every
// reader goes through the config lock and the cache lock.
func BenchmarkTokenReadCachedParallel(b *testing.B) {
	m := newBenchMount(b)
	m.mustReadToken(b)
	m.calls.Reset()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := m.readToken(); err != nil {
				b.Errorf("reading a token: %v", err) // not Fatal: this is not the benchmark's goroutine
				return
			}
		}
	})
	b.StopTimer()
	m.reportCalls(b, b.N)
}

// BenchmarkTokenReadCold drops the cached token before each read, so every
// read is a token request to the fake on loopback (kept-alive connection).
func BenchmarkTokenReadCold(b *testing.B) {
	m := newBenchMount(b)
	before := m.fake.Requests()
	m.calls.Reset()
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		m.backend.forgetToken()
		m.mustReadToken(b)
		n++
	}
	b.StopTimer()
	m.reportCalls(b, n)
	if got := m.fake.Requests() - before; got != n {
		b.Fatalf("%d cold reads made %d requests to the fake", n, got)
	}
}
