package mirakl

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/fakemirakl"
)

// deleteHookStorage runs beforeDelete before each Delete: a test's way into
// the moment between two steps of a config delete.
type deleteHookStorage struct {
	*logical.InmemStorage
	beforeDelete func(key string)
}

func (s *deleteHookStorage) Delete(ctx context.Context, key string) error {
	s.beforeDelete(key)
	return s.InmemStorage.Delete(ctx, key)
}

// A token that the deleted config's request brings while the delete runs
// (after the stored token was dropped, before the state was replaced) is not
// stored: it must not come back after a restart.
func TestConfigDeleteDropsATokenStoredDuringIt(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	env.Configure(map[string]any{"verify": false})
	_, first := env.MustReadToken()
	replaced := env.backend.loadedMount()
	hold, release := releaser(t)
	env.fake.Enqueue(fakemirakl.Hang(hold))
	env.clock.Advance(48*time.Minute + 30*time.Second) // past the refresh point, above min_ttl
	env.MustReadToken()                                // starts the background refresh, which hangs
	waitFor(t, "the background request", func() bool { return env.fake.Requests() == 2 })

	storedDuringDelete := false
	hooked := &deleteHookStorage{InmemStorage: env.storage, beforeDelete: func(key string) {
		if key != configStorageKey {
			return
		}
		release() // the old config's request brings its token, now
		waitGroup(t, "the old config's request to end", &replaced.defaultToken.cache.running)
		if tok := replaced.defaultToken.cache.current(); tok == nil || tok.AccessToken == first {
			t.Fatal("the old config's request brought no token")
		}
		storedDuringDelete = true
	}}
	resp, err := env.backend.HandleRequest(env.ctx, &logical.Request{Operation: logical.DeleteOperation, Path: "config", Storage: hooked, MountPoint: "mirakl/"})
	requireOK(t, resp, err)
	if !storedDuringDelete {
		t.Fatal("the test did not reach the moment it is about")
	}
	if stored := env.storedToken(); stored != nil {
		t.Fatal("a token of the deleted config is still stored")
	}
}
