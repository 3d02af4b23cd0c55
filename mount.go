package mirakl

import (
	"context"
	"fmt"

	"github.com/hashicorp/vault/sdk/logical"
)

// mountState is one config with what derives from it: the client that sends
// its secret and the cache of its tokens and requests. A config change
// replaces it whole and closes the old one, which cancels its requests: none
// goes on with a secret that was replaced or deleted, and a request that the
// change overtook can only fill a cache nobody reads.
type mountState struct {
	config *miraklConfig
	client *tokenClient
	cache  *tokenCache
}

func (b *backend) newMountState(cfg *miraklConfig, client *tokenClient) *mountState {
	return &mountState{config: cfg, client: client, cache: newTokenCache(b.alive)}
}

// close ends the state's requests and drops its idle connections.
func (m *mountState) close() {
	m.cache.close()
	m.client.close()
}

// currentMount returns the mount's state, loading the config from storage
// once; nil means the mount is not configured.
func (b *backend) currentMount(ctx context.Context, s logical.Storage) (*mountState, error) {
	if mount := b.mount.Load(); mount != nil {
		return mount, nil
	}
	b.mountWrites.Lock()
	defer b.mountWrites.Unlock()
	if mount := b.mount.Load(); mount != nil {
		return mount, nil
	}
	cfg, err := readConfig(ctx, s)
	if err != nil || cfg == nil {
		return nil, err
	}
	client, err := newTokenClient(cfg, b.retries, b.now, b.Logger().Named("client"))
	if err != nil {
		return nil, fmt.Errorf("loading config: %w", err)
	}
	mount := b.newMountState(cfg, client)
	b.restoreToken(ctx, s, mount) // token_store.go
	b.mount.Store(mount)
	return mount, nil
}

// loadedMount is the mount's state if it is in memory, without touching storage.
func (b *backend) loadedMount() *mountState { return b.mount.Load() }

// setMount replaces the mount's state (nil: load again from storage on next
// use) and closes the old one.
func (b *backend) setMount(mount *mountState) {
	b.mountWrites.Lock()
	defer b.mountWrites.Unlock()
	if old := b.mount.Swap(mount); old != nil && old != mount {
		old.close()
	}
}
