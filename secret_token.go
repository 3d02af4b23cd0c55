package mirakl

import (
	"context"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// secretTokenType names the lease type in Vault's storage. Never rename it:
// leases issued under an old name could no longer be revoked.
const secretTokenType = "mirakl_token"

// internalFingerprint identifies the leased token without storing it in the lease.
const internalFingerprint = "token_fingerprint"

func secretToken(b *backend) *framework.Secret {
	return &framework.Secret{
		Type: secretTokenType,
		Fields: map[string]*framework.FieldSchema{
			"access_token": {Type: framework.TypeString, Description: "Bearer token for the Mirakl Connect APIs."},
			"token_type":   {Type: framework.TypeString, Description: "Always Bearer."},
			"expires_in":   {Type: framework.TypeInt, Description: "Seconds the token has left, as of the response."},
			"expires_at":   {Type: framework.TypeString, Description: "When the token expires (RFC 3339)."},
		},
		Renew:  b.secretTokenRenew,
		Revoke: b.secretTokenRevoke,
	}
}

// secretTokenRenew refuses: a Mirakl token's life cannot be extended.
func (b *backend) secretTokenRenew(_ context.Context, _ *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	return logical.ErrorResponse("Mirakl tokens cannot be renewed: read the token path again for a new token"), nil
}

// secretTokenRevoke always succeeds and changes nothing: Mirakl has no
// revocation endpoint, a failing revoke would leave leases stuck and block
// "vault secrets disable", and the cached token is shared by other readers.
// Leases end whenever a reader's Vault token does; fetching a new token each
// time would make those ends requests to Mirakl.
func (b *backend) secretTokenRevoke(context.Context, *logical.Request, *framework.FieldData) (*logical.Response, error) {
	return nil, nil
}
