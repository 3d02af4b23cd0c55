package mirakl

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

func pathToken(b *backend) *framework.Path {
	return &framework.Path{
		Pattern: "token",
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefixMirakl,
		},
		Fields: map[string]*framework.FieldSchema{
			fieldMinTTL: {
				Type:        framework.TypeDurationSecond,
				Description: "Least life the returned token must have left (e.g. 30m); defaults to the config's min_ttl.",
				Query:       true,
			},
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{
				Callback: b.pathTokenRead,
				Summary:  "Get a Mirakl Bearer token under a lease that ends when the token expires.",
				// The active node's cache serves the whole cluster.
				ForwardPerformanceStandby:   true,
				ForwardPerformanceSecondary: true,
				DisplayAttrs:                &framework.DisplayAttributes{OperationVerb: "generate", OperationSuffix: "token"},
			},
		},
		HelpSynopsis:    pathTokenHelpSynopsis,
		HelpDescription: pathTokenHelpDescription,
	}
}

func (b *backend) pathTokenRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	var minTTL *time.Duration
	if v, ok := d.GetOk(fieldMinTTL); ok {
		// The framework already refused negative and unparsable values.
		ttl := time.Duration(v.(int)) * time.Second
		minTTL = &ttl
	}

	tok, warnings, err := b.token(ctx, req.Storage, minTTL)
	switch {
	case errors.Is(err, errNotConfigured):
		return logical.ErrorResponse("this mount is not configured yet: run vault write %sconfig client_id=... client_secret=...", req.MountPoint), nil
	case err != nil:
		var upstream *UpstreamError
		if errors.As(err, &upstream) {
			return nil, logical.CodedError(http.StatusBadGateway, err.Error())
		}
		return nil, fmt.Errorf("getting a token: %w", err)
	}

	// Leases are counted in whole seconds; round rather than truncate so that a
	// fresh token's lease equals Mirakl's expires_in.
	left := max(tok.remaining(b.now()).Round(time.Second), time.Second)
	data := map[string]any{
		"access_token": tok.AccessToken,
		"token_type":   tok.TokenType,
		"expires_in":   int64(left.Seconds()),
		"expires_at":   tok.expiresAt.UTC().Format(time.RFC3339),
	}
	if tok.TargetApp != "" {
		data["target_app"] = tok.TargetApp
	}
	if tok.ResourceOwner != "" {
		data["resource_owner"] = tok.ResourceOwner
	}
	resp := b.Secret(secretTokenType).Response(data, map[string]any{
		internalFingerprint: tok.fingerprint,
	})
	resp.Secret.TTL = left
	resp.Secret.MaxTTL = left
	resp.Secret.Renewable = false
	for _, w := range warnings {
		resp.AddWarning(w)
	}
	return resp, nil
}

const pathTokenHelpSynopsis = `Get a Mirakl Connect Bearer token.` //nolint:gosec // G101: help text, not a credential.

const pathTokenHelpDescription = `
Returns a Bearer token for the Mirakl Connect APIs, exchanged with the stored
client credentials. The token is cached per mount and shared by readers while
it has at least min_ttl of life left; a new one is fetched otherwise, once for
all concurrent readers.

The lease lasts as long as the token: it cannot be renewed (read again for a
new token). Revoking the lease drops the token from the cache, so the next read
gets a new one. Vault Agent re-reads the token before its lease ends.

  $ vault read mirakl/token
  $ vault read mirakl/token min_ttl=30m
`
