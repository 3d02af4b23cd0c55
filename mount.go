package mirakl

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

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
	// restorePending: the stored token has not been looked for yet, or
	// storage could not be read: the state's next use looks again.
	restorePending atomic.Bool
}

func (b *backend) newMountState(cfg *miraklConfig, client *tokenClient) *mountState {
	return &mountState{config: cfg, client: client, cache: newTokenCache(b.alive)}
}

// close ends the state's requests and drops its idle connections.
func (m *mountState) close() {
	m.cache.close()
	m.client.close()
}

// errMountClosed: Vault ended the mount (unmount, reload, shutdown) and a
// request still reached it.
var errMountClosed = errors.New("the mount is being unmounted or reloaded")

// mountLoadTimeout bounds the storage reads of one load.
const mountLoadTimeout = 10 * time.Second

// currentMount returns the mount's state, loading the config and the stored
// token from storage once; nil means the mount is not configured. The load
// is work for every reader: it runs on the mount's context, never on the
// reader's that happened to come first, so that a reader who hangs up cannot
// leave the mount without its stored token; a restore that storage failed is
// tried again on the next use. One load builds one state.
func (b *backend) currentMount(_ context.Context, s logical.Storage) (*mountState, error) {
	if mount := b.mount.Load(); mount != nil && !mount.restorePending.Load() {
		return mount, nil
	}
	b.mountWrites.Lock()
	defer b.mountWrites.Unlock()
	if b.alive.Err() != nil {
		return nil, errMountClosed
	}
	ctx, cancel := context.WithTimeout(b.alive, mountLoadTimeout)
	defer cancel()
	mount := b.mount.Load()
	if mount == nil {
		cfg, err := readConfig(ctx, s)
		if err != nil || cfg == nil {
			return nil, err
		}
		client, err := newTokenClient(cfg, b.retries, b.now, b.Logger().Named("client"))
		if err != nil {
			return nil, fmt.Errorf("loading config: %w", err)
		}
		mount = b.newMountState(cfg, client)
		mount.restorePending.Store(true)
		b.mount.Store(mount)
	}
	if mount.restorePending.Load() && b.restoreToken(ctx, s, mount) { // token_store.go
		mount.restorePending.Store(false)
	}
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
