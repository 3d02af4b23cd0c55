// Package noopplugin is the smallest secrets engine that issues leases: one
// read path that returns a constant under a non-renewable lease. The
// benchmarks run it as an external plugin next to the Mirakl engine, on the
// same SDK, to measure the floor of any lease-issuing plugin read: Vault's
// plugin gRPC round trip plus lease registration, with no work of its own.
//
// It is a measuring instrument, not a product: nothing ships it.
package noopplugin

import (
	"context"
	"maps"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// SecretType names the lease type of the constant.
const SecretType = "noop_constant"

// LeaseTTL is the lease of every read: the lifetime of a Mirakl token, so
// that both engines leave Vault the same kind of lease to track.
const LeaseTTL = time.Hour

// response is the constant handed out. Its fields mirror a mirakl/token
// response so that both engines send Vault payloads of the same shape and size.
var response = map[string]any{
	"access_token": "noop-constant-0123456789abcdef0123456789abcdef",
	"token_type":   "Bearer",
	"expires_in":   int64(LeaseTTL.Seconds()),
	"expires_at":   "2026-01-01T00:00:00Z",
}

// Factory is what plugin.ServeMultiplex calls for each mount.
func Factory(ctx context.Context, conf *logical.BackendConfig) (logical.Backend, error) {
	b := New()
	if err := b.Setup(ctx, conf); err != nil {
		return nil, err
	}
	return b, nil
}

// New returns the engine before Setup, for in-process benchmarks.
func New() *framework.Backend {
	b := &framework.Backend{
		Help:        "Returns a constant under a lease; a benchmark floor.",
		BackendType: logical.TypeLogical,
	}
	b.Secrets = []*framework.Secret{{
		Type: SecretType,
		// A lease that cannot be renewed and whose revocation has nothing to undo.
		Revoke: func(context.Context, *logical.Request, *framework.FieldData) (*logical.Response, error) {
			return nil, nil
		},
	}}
	b.Paths = []*framework.Path{{
		Pattern: "token",
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{
				Summary: "Return the constant under a lease.",
				Callback: func(context.Context, *logical.Request, *framework.FieldData) (*logical.Response, error) {
					resp := b.Secret(SecretType).Response(maps.Clone(response), nil)
					resp.Secret.TTL = LeaseTTL
					resp.Secret.MaxTTL = LeaseTTL
					resp.Secret.Renewable = false
					return resp, nil
				},
			},
		},
	}}
	return b
}
