package mirakl

import (
	"context"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

func TestFactoryReportsVersion(t *testing.T) {
	b, err := Factory(context.Background(), logical.TestBackendConfig())
	if err != nil {
		t.Fatal(err)
	}
	fb := b.(*backend)
	if fb.RunningVersion != Version || Version == "" {
		t.Fatalf("RunningVersion = %q, Version = %q", fb.RunningVersion, Version)
	}
	if got := fb.PathsSpecial.SealWrapStorage; len(got) != 1 || got[0] != configStorageKey {
		t.Fatalf("SealWrapStorage = %v", got)
	}
}

func TestInvalidateDropsConfigAndToken(t *testing.T) {
	env := newTestEnv(t)
	env.Configure(nil)
	_, first := env.MustReadToken()

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
