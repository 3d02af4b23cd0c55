package mirakl

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

func TestFactoryReportsVersion(t *testing.T) {
	t.Parallel()
	b, err := Factory(context.Background(), logical.TestBackendConfig())
	if err != nil {
		t.Fatal(err)
	}
	fb := b.(*backend)
	if fb.RunningVersion != Version || Version == "" {
		t.Fatalf("RunningVersion = %q, Version = %q", fb.RunningVersion, Version)
	}
	if got := fb.PathsSpecial.SealWrapStorage; !slices.Equal(got, []string{configStorageKey, tokenStorageKey, roleTokenStoragePrefix}) {
		t.Fatalf("SealWrapStorage = %v", got)
	}
}

func TestInvalidateDropsConfigAndToken(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	env.Configure(nil)
	_, first := env.MustReadToken()

	// As the active node's config write does (token_store_test.go covers
	// an invalidation that finds the stored token).
	if err := env.storage.Delete(env.ctx, tokenStorageKey); err != nil {
		t.Fatal(err)
	}
	env.backend.invalidate(env.ctx, configStorageKey)
	_, second := env.MustReadToken()
	if first == second {
		t.Fatal("a read after invalidation reused the cached token")
	}
	if got := env.fake.Stats().Issued; got != 2 {
		t.Fatalf("fake issued %d tokens, want 2", got)
	}

	env.backend.invalidate(env.ctx, "some/other/key")
	if _, third := env.MustReadToken(); third != second {
		t.Fatal("invalidating an unrelated key dropped the token")
	}
}

// countingSystemView counts LocalMount calls: in a real plugin each is a gRPC
// round trip into Vault.
type countingSystemView struct {
	*logical.StaticSystemView
	mu    sync.Mutex
	local bool
	asked int
}

func (v *countingSystemView) LocalMount() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.asked++
	return v.local
}

func (v *countingSystemView) answer(local bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.local = local
}

func (v *countingSystemView) calls() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.asked
}

// The SDK asks LocalMount on every request to a path that forwards from
// performance secondaries. A true is remembered for good; a false, which is
// also how a failed call reports, is asked again after a minute.
func TestLocalMountRemembered(t *testing.T) {
	t.Parallel()
	view := &countingSystemView{StaticSystemView: logical.TestSystemView()}
	config := logical.TestBackendConfig()
	config.System = view
	clock := &testClock{now: time.Date(2026, 11, 28, 11, 0, 0, 0, time.UTC)}
	b, err := newBackend(context.Background(), config, clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cleanupWithin(t, b) })
	readStatus := func(times int) {
		t.Helper()
		for range times {
			resp, err := b.HandleRequest(context.Background(), &logical.Request{Operation: logical.ReadOperation, Path: "status", Storage: &logical.InmemStorage{}})
			requireOK(t, resp, err)
		}
	}
	requireAsked := func(when string, want int) {
		t.Helper()
		if got := view.calls(); got != want {
			t.Fatalf("%s: LocalMount asked of Vault %d times, want %d", when, got, want)
		}
	}

	readStatus(10)
	requireAsked("a false", 1)
	clock.Advance(59 * time.Second)
	readStatus(1)
	requireAsked("59s after a false", 1)
	clock.Advance(time.Second)
	view.answer(true)
	readStatus(10)
	requireAsked("a minute after a false", 2)
	clock.Advance(24 * time.Hour)
	readStatus(1)
	requireAsked("a day after a true", 2)
}
