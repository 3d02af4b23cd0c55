// Package mirakl is a Vault secrets engine that keeps a Mirakl Connect client
// secret and hands out short-lived Mirakl Bearer tokens under Vault leases.
package mirakl

import (
	"context"
	"sync"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// Version is the plugin's semantic version, set at build time with
// -ldflags "-X github.com/vault-plugin-mirakl/vault-plugin-mirakl.Version=v0.1.0".
var Version = "v0.0.0-dev"

const operationPrefixMirakl = "mirakl"

// Factory is what plugin.ServeMultiplex calls for each mount.
func Factory(ctx context.Context, conf *logical.BackendConfig) (logical.Backend, error) {
	b := newBackend()
	if err := b.setup(ctx, conf); err != nil {
		return nil, err
	}
	return b, nil
}

// setup is framework.Backend.Setup with a system view that remembers
// whether the mount is local. The SDK asks on every request to a path that
// sets ForwardPerformanceSecondary, and each question is a gRPC round trip
// into Vault; the answer is fixed when the mount is enabled.
func (b *backend) setup(ctx context.Context, conf *logical.BackendConfig) error {
	withView := *conf
	if conf.System != nil {
		withView.System = &mountFactsView{SystemView: conf.System}
	}
	return b.Setup(ctx, &withView)
}

type mountFactsView struct {
	logical.SystemView
	localOnce sync.Once
	local     bool
}

func (v *mountFactsView) LocalMount() bool {
	v.localOnce.Do(func() { v.local = v.SystemView.LocalMount() })
	return v.local
}

type backend struct {
	*framework.Backend

	// now is the only clock the engine reads; tests replace it.
	now func() time.Time
	// retries is the retry policy of token clients; tests shorten it.
	retries retryPolicy

	// The parsed config and its client stay in memory so that a cached token
	// read touches neither storage nor the network. configLoaded is false until
	// the first read after start, a write or an invalidation.
	mu           sync.RWMutex
	configLoaded bool
	config       *miraklConfig
	client       *tokenClient

	tokens tokenCache

	// configWrites serialises config writes and deletes, so that two updates
	// cannot each merge into the same old config.
	configWrites sync.Mutex
}

func newBackend() *backend {
	b := &backend{now: time.Now, retries: defaultRetryPolicy}
	b.Backend = &framework.Backend{
		Help:        backendHelp,
		BackendType: logical.TypeLogical,
		PathsSpecial: &logical.Paths{
			SealWrapStorage: []string{configStorageKey},
		},
		Paths: []*framework.Path{
			pathConfig(b),
			pathToken(b),
		},
		Secrets: []*framework.Secret{
			secretToken(b),
		},
		Invalidate:     b.invalidate,
		RunningVersion: Version,
	}
	return b
}

// invalidate runs on nodes whose storage changed under them (standbys, replicas).
func (b *backend) invalidate(_ context.Context, key string) {
	if key == configStorageKey {
		b.resetConfig()
	}
}

// resetConfig forgets the in-memory config, its client and every cached token.
func (b *backend) resetConfig() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.client != nil {
		b.client.close()
	}
	b.configLoaded, b.config, b.client = false, nil, nil
	b.tokens.reset()
}

// currentConfig returns the config and its client, loading them from storage
// once; nil config means the mount is not configured.
func (b *backend) currentConfig(ctx context.Context, s logical.Storage) (*miraklConfig, *tokenClient, error) {
	b.mu.RLock()
	if b.configLoaded {
		defer b.mu.RUnlock()
		return b.config, b.client, nil
	}
	b.mu.RUnlock()

	b.mu.Lock()
	defer b.mu.Unlock()
	if b.configLoaded {
		return b.config, b.client, nil
	}
	cfg, err := readConfig(ctx, s)
	if err != nil {
		return nil, nil, err
	}
	var client *tokenClient
	if cfg != nil {
		if client, err = newTokenClient(cfg, b.retries, b.Logger().Named("client")); err != nil {
			return nil, nil, err
		}
	}
	b.configLoaded, b.config, b.client = true, cfg, client
	return cfg, client, nil
}

// installConfig makes a just-stored config current, seeding the cache with the
// token its verification fetched (nil when not verified).
func (b *backend) installConfig(cfg *miraklConfig, client *tokenClient, verified *cachedToken) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.client != nil && b.client != client {
		b.client.close()
	}
	b.configLoaded, b.config, b.client = true, cfg, client
	b.tokens.reset()
	if verified != nil {
		b.tokens.seed(verified)
	}
}

const backendHelp = `
The Mirakl secrets engine keeps a Mirakl Connect client ID and client secret
and exchanges them for short-lived Bearer tokens (OAuth 2.0 client-credentials
grant). Applications read mirakl/token and never see the client secret.

Configure it once with "mirakl/config"; then read "mirakl/token".
`
