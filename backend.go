// Package mirakl is a Vault secrets engine that keeps a Mirakl Connect client
// secret and hands out short-lived Mirakl Bearer tokens under Vault leases.
package mirakl

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"
)

// Version is the plugin's semantic version, set at build time with
// -ldflags "-X github.com/vault-plugin-mirakl/vault-plugin-mirakl.Version=v0.1.0".
var Version = "v0.0.0-dev"

const operationPrefixMirakl = "mirakl"

// Factory is what plugin.ServeMultiplex calls for each mount.
func Factory(ctx context.Context, conf *logical.BackendConfig) (logical.Backend, error) {
	b, err := newBackend(ctx, conf, time.Now)
	if err != nil {
		return nil, err
	}
	return b, nil
}

type backend struct {
	*framework.Backend

	// now is the only clock the engine reads; tests replace it.
	now func() time.Time
	// retries is the retry policy within one token request; tests shorten it.
	retries retryPolicy
	// fresherWait bounds a reader's wait for a token with more life than
	// the cached one (path_token.go); tests shorten it.
	fresherWait time.Duration

	// The mount's config with its client and token cache stays in memory so
	// that a cached token read touches neither storage nor the network. nil
	// until the first read after start, a write or an invalidation.
	// Reads load it without a lock; mountWrites serialises whoever replaces
	// it (a load from storage, a config write, an invalidation).
	mount       atomic.Pointer[mountState]
	mountWrites sync.Mutex

	// configWrites serialises config writes and deletes, so that two updates
	// cannot each merge into the same old config.
	configWrites sync.Mutex

	// alive is the parent of every mount state's requests: it ends with the
	// mount (Clean).
	alive context.Context
	stop  context.CancelFunc

	// metrics counts requests to Mirakl and reads, for status and metrics.
	metrics *mountMetrics

	tokens tokenStore // the token kept in storage (token_store.go)
}

// newBackend builds a mount's backend on the given clock.
func newBackend(ctx context.Context, conf *logical.BackendConfig, now func() time.Time) (*backend, error) {
	b := &backend{now: now, retries: defaultRetryPolicy, fresherWait: fresherWait}
	b.tokens.storage = conf.StorageView // token_store.go: writes outside any request
	b.alive, b.stop = context.WithCancel(context.Background())
	b.metrics = newMountMetrics(b)
	b.Backend = &framework.Backend{
		Help:        backendHelp,
		BackendType: logical.TypeLogical,
		PathsSpecial: &logical.Paths{
			SealWrapStorage: []string{configStorageKey, tokenStorageKey, roleTokenStoragePrefix},
		},
		Paths: framework.PathAppend(
			[]*framework.Path{
				pathConfig(b),
				pathToken(b),
				pathRoleToken(b),
			},
			pathRoles(b),
			[]*framework.Path{
				pathStatus(b),
				pathRoleStatus(b),
				pathMetrics(b),
			},
		),
		Secrets: []*framework.Secret{
			secretToken(b),
		},
		Invalidate:     b.invalidate,
		PeriodicFunc:   b.periodic, // token_store.go: keeps the token stored, then refreshAhead
		Clean:          b.clean,
		RunningVersion: Version,
	}
	if err := b.Setup(ctx, withRememberedLocalMount(conf, now)); err != nil {
		return nil, err
	}
	return b, nil
}

// clean runs when the mount goes away: its requests stop with it.
func (b *backend) clean(context.Context) {
	b.stop()
	b.setMount(nil)
}

// invalidate runs on nodes whose storage changed under them (standbys,
// replicas): what changed loads again on next use.
func (b *backend) invalidate(_ context.Context, key string) {
	switch {
	case key == configStorageKey || key == tokenStorageKey: // token_store.go: the stored token reloads with the config
		b.setMount(nil)
	case strings.HasPrefix(key, roleStoragePrefix) || strings.HasPrefix(key, roleTokenStoragePrefix):
		if mount := b.loadedMount(); mount != nil {
			role := strings.TrimPrefix(strings.TrimPrefix(key, roleStoragePrefix), roleTokenStoragePrefix)
			mount.dropRole(role)
		}
	}
}

// replicaOrStandby: another node holds this mount's tokens, and requests from
// here would only duplicate its own.
func (b *backend) replicaOrStandby() bool {
	return b.System().ReplicationState().HasState(consts.ReplicationPerformanceSecondary |
		consts.ReplicationPerformanceStandby | consts.ReplicationDRSecondary)
}

// withRememberedLocalMount wraps the system view so that LocalMount, which the
// SDK asks on every request to a path that sets ForwardPerformanceSecondary
// and which is a gRPC round trip into Vault each time, is answered from memory
// once known. The gRPC client reports a failed call as false: a false is
// asked again after a minute, so that a failure is not remembered forever.
func withRememberedLocalMount(conf *logical.BackendConfig, now func() time.Time) *logical.BackendConfig {
	if conf.System == nil {
		return conf
	}
	withView := *conf
	withView.System = &rememberedLocalMount{SystemView: conf.System, now: now}
	return &withView
}

type rememberedLocalMount struct {
	logical.SystemView
	now func() time.Time

	// Every request asks, so the answer is read without a lock.
	local      atomic.Bool
	falseUntil atomic.Int64 // Unix nanoseconds until which a false answer stands
}

const localMountFalseRecheck = time.Minute

func (v *rememberedLocalMount) LocalMount() bool {
	if v.local.Load() {
		return true // a mount does not stop being local
	}
	now := v.now().UnixNano()
	if now < v.falseUntil.Load() {
		return false
	}
	local := v.SystemView.LocalMount()
	v.local.Store(local)
	v.falseUntil.Store(now + int64(localMountFalseRecheck))
	return local
}

const backendHelp = `
The Mirakl secrets engine keeps a Mirakl Connect client ID and client secret
and exchanges them for short-lived Bearer tokens (OAuth 2.0 client-credentials
grant). Applications read mirakl/token and never see the client secret.

Configure it once with "mirakl/config"; then read "mirakl/token". For the
seller APIs, each company's token comes from a role: "mirakl/roles/:name"
names its audience and "mirakl/token/:name" serves its token. Operators see
the engine's dealings with Mirakl at "mirakl/status"; Prometheus scrapes
"mirakl/metrics".
`
