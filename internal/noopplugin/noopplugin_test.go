package noopplugin

import (
	"context"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/callcount"
)

func readConstant(tb testing.TB, b logical.Backend, storage logical.Storage) *logical.Response {
	resp, err := b.HandleRequest(context.Background(), &logical.Request{
		Operation: logical.ReadOperation, Path: "token", Storage: storage, MountPoint: "noop/",
	})
	if err != nil || resp == nil || resp.IsError() {
		tb.Fatalf("reading the constant: %#v %v", resp, err)
	}
	return resp
}

func TestReadIsALeasedConstant(t *testing.T) {
	storage := &logical.InmemStorage{}
	config := logical.TestBackendConfig()
	config.StorageView = storage
	b, err := Factory(context.Background(), config)
	if err != nil {
		t.Fatal(err)
	}
	resp := readConstant(t, b, storage)
	if resp.Secret == nil || resp.Secret.TTL != LeaseTTL || resp.Secret.Renewable {
		t.Fatalf("want a non-renewable lease of %s, got %#v", LeaseTTL, resp.Secret)
	}
	if resp.Data["access_token"] != response["access_token"] {
		t.Fatalf("data = %v", resp.Data)
	}
	// The handler must hand out a copy: Vault may alter the response it gets.
	resp.Data["access_token"] = "changed"
	if again := readConstant(t, b, storage); again.Data["access_token"] != response["access_token"] {
		t.Fatal("a response shares its data with the constant")
	}

	revoke, err := b.HandleRequest(context.Background(), &logical.Request{
		Operation: logical.RevokeOperation, Secret: resp.Secret, Storage: storage,
	})
	if err != nil || (revoke != nil && revoke.IsError()) {
		t.Fatalf("revoke: %#v %v", revoke, err)
	}
}

// BenchmarkNoopRead is the in-process floor of a lease-issuing read through
// the SDK's framework, to set beside BenchmarkTokenReadCached.
// Like the engine's benchmarks, it reports the calls into Vault per read
// (each a gRPC round trip in a real plugin): those of the SDK alone.
func BenchmarkNoopRead(b *testing.B) {
	calls := &callcount.Counter{}
	config := logical.TestBackendConfig()
	config.StorageView = &logical.InmemStorage{}
	config = callcount.Config(config, calls)
	backend, err := Factory(context.Background(), config)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	reads := 0
	for b.Loop() {
		readConstant(b, backend, config.StorageView)
		reads++
	}
	b.StopTimer()
	b.ReportMetric(float64(calls.Total())/float64(reads), "vault-calls/op")
}
