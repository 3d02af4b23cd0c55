package mirakl

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// mountState is one config with what derives from it: the client that sends
// its secret, the gate its requests pass, and its tokens: the default one and
// each role's (token_source.go). A config change replaces it whole and closes
// the old one, which cancels its requests: none goes on with a secret that
// was replaced or deleted, and a request that the change overtook can only
// fill a cache nobody reads.
type mountState struct {
	config *miraklConfig
	client *tokenClient
	// gate is the one decision per endpoint and credentials: every token of
	// the mount, the default one and each role's, passes it.
	gate         gate
	defaultToken *tokenSource
	roles        roles
}

func (b *backend) newMountState(cfg *miraklConfig, client *tokenClient) *mountState {
	mount := &mountState{config: cfg, client: client}
	mount.defaultToken = b.newTokenSource(mount, defaultRole, cfg.Audience, cfg.MinTTL)
	return mount
}

// close ends the state's requests and drops its idle connections.
func (m *mountState) close() {
	m.eachSource((*tokenSource).close)
	m.client.close()
}

// retire marks every token of the state as not to be stored any more.
func (m *mountState) retire() {
	m.eachSource(func(src *tokenSource) { src.retired.Store(true) })
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
	if mount := b.mount.Load(); mount != nil && !mount.defaultToken.restorePending.Load() {
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
		b.mount.Store(mount)
	}
	if src := mount.defaultToken; src.restorePending.Load() && b.restoreToken(ctx, s, mount, src) { // token_store.go
		src.restorePending.Store(false)
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

// replaceMount makes next (nil: none) the mount's state after a config write
// or delete: with no load of the mount in between, it retires the current
// state's tokens and drops the stored ones (token_store.go), runs write (the
// config's own storage change), and installs next; then it closes the old
// state. Nothing changes in memory if write fails, and the old tokens go on
// being stored.
func (b *backend) replaceMount(ctx context.Context, s logical.Storage, next *mountState, write func() error) error {
	b.mountWrites.Lock()
	old := b.mount.Load()
	err := b.dropStoredTokens(ctx, s, old)
	if err == nil {
		err = write()
	}
	if err != nil {
		if old != nil {
			old.eachSource(func(src *tokenSource) { reinstate(src) })
		}
		b.mountWrites.Unlock()
		return err
	}
	b.mount.Store(next)
	b.mountWrites.Unlock()
	if old != nil && old != next {
		old.close()
	}
	return nil
}
