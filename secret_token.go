package mirakl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// secretTokenType names the lease type in Vault's storage. Never rename it:
// leases issued under an old name could no longer be revoked.
const secretTokenType = "mirakl_token"

// The lease's internal data: what identifies the token and when it expires,
// never the token itself.
const (
	internalFingerprint = "token_fingerprint"
	internalExpiresAt   = "token_expires_at" // RFC 3339, so that a renewal needs neither storage nor Mirakl
	// internalLifetime is the lifetime Mirakl issued the token with, in
	// seconds: no renewal is longer, whatever the wall clock did since.
	internalLifetime = "token_lifetime_seconds"
	// internalRole and internalAudience: the role a lease's token was read
	// from, and the audience it was issued for (absent for mirakl/token).
	internalRole     = "role"
	internalAudience = "audience"
)

// leaseData is the internal data of a lease on tok, read from src.
func leaseData(src *tokenSource, tok *cachedToken) map[string]any {
	data := map[string]any{
		internalFingerprint: tok.fingerprint,
		internalExpiresAt:   tok.expiresAtLease,
		internalLifetime:    tok.lifetimeLease,
	}
	if src.role != defaultRole {
		data[internalRole] = src.role
		data[internalAudience] = src.audience
	}
	return data
}

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

// renewMargin is how much earlier than the token a renewed lease ends.
const renewMargin = time.Second

// secretTokenRenew extends a lease to the token's own expiry and never past
// it: a Mirakl token's life cannot be extended. Renewable leases are what
// lets Vault Proxy and Agent keep one lease per token for all their readers;
// they read again once the renewal stops growing.
func (b *backend) secretTokenRenew(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	expiresAt, known := leaseExpiry(req.Secret)
	if !known {
		// Leases from before renewals carry no expiry: they end on their own.
		return logical.ErrorResponse("this lease cannot be renewed (it predates renewable leases): read %stoken for a new token", req.MountPoint), nil
	}
	src, problem, err := b.leaseSource(ctx, req)
	if err != nil {
		return nil, err
	}
	if problem != "" {
		return logical.ErrorResponse(problem), nil
	}
	// The lease knows the token's expiry by the wall clock only; while the
	// token is the cached one, the one clock rule (clock.go) applies too, so
	// that a wall clock stepped back does not lengthen the lease.
	now := b.now()
	fingerprint, _ := req.Secret.InternalData[internalFingerprint].(string)
	left := timeLeft(now, expiresAt)
	if lifetime, ok := leaseLifetime(req.Secret); ok {
		left = min(left, lifetime)
	}
	if src != nil && fingerprint != "" {
		if tok := src.cache.current(); tok != nil && tok.fingerprint == fingerprint {
			left = min(left, tok.remaining(now))
		}
	}
	// Vault checks the answer against the cap a moment after we computed it:
	// a second's margin keeps an ordinary renewal within the token's expiry
	// without a "capped" warning.
	left = (left - renewMargin).Truncate(time.Second)
	if left < time.Second {
		return logical.ErrorResponse("the Mirakl token of this lease has expired: read %stoken for a new token", req.MountPoint), nil
	}
	// A renewal is a reader still using the token: if it is the cached one
	// and its successor is due, fetch that now, so that the reader's next read
	// (when renewals stop growing) finds a fresh token.
	if src != nil && fingerprint != "" {
		b.refreshIfDue(src, fingerprint)
	}
	resp := &logical.Response{Secret: req.Secret}
	resp.Secret.TTL = left
	// Vault caps a renewal at the lease's issue time plus MaxTTL: measured
	// from there, the cap is the token's expiry itself.
	resp.Secret.MaxTTL = left
	if issued := req.Secret.IssueTime; !issued.IsZero() && expiresAt.After(issued) {
		resp.Secret.MaxTTL = expiresAt.Sub(issued)
	}
	return resp, nil
}

// leaseSource is the token source of a lease being renewed, if in memory
// (nil: none), or what keeps the lease from being renewed: its role was
// deleted or now names another audience, so that a team whose role was
// withdrawn does not keep a lease alive. A lease of the default token needs
// nothing from storage; a role's loads its role as a read does.
func (b *backend) leaseSource(ctx context.Context, req *logical.Request) (*tokenSource, string, error) {
	role, _ := req.Secret.InternalData[internalRole].(string)
	if role == defaultRole {
		if mount := b.loadedMount(); mount != nil {
			return mount.defaultToken, "", nil
		}
		return nil, "", nil
	}
	audience, _ := req.Secret.InternalData[internalAudience].(string)
	mount, err := b.currentMount(ctx, req.Storage)
	if err != nil {
		return nil, "", err
	}
	// The role as it is now: in memory with its token when configured;
	// without a config (the lease runs to its token's expiry, as
	// mirakl/token's do), from storage.
	var src *tokenSource
	var roleAudience string
	if mount != nil {
		if src, err = b.source(req.Storage, mount, role); err == nil {
			roleAudience = src.audience
		}
	} else {
		var r *miraklRole
		if r, err = readRole(ctx, req.Storage, role); err == nil && r == nil {
			err = errRoleNotFound
		} else if err == nil {
			roleAudience = r.Audience
		}
	}
	switch {
	case errors.Is(err, errRoleNotFound):
		return nil, fmt.Sprintf("this lease cannot be renewed: its role %q was deleted", role), nil
	case err != nil:
		return nil, "", err
	case roleAudience != audience:
		return nil, fmt.Sprintf("this lease cannot be renewed: its role %q now names another audience; read %stoken/%s for a token of the new one", role, req.MountPoint, role), nil
	}
	return src, "", nil
}

// secretTokenRevoke always succeeds and changes nothing: Mirakl has no
// revocation endpoint, a failing revoke would leave leases stuck and block
// "vault secrets disable", and the cached token is shared by other readers.
// Leases end whenever a reader's Vault token does; fetching a new token each
// time would make those ends requests to Mirakl.
func (b *backend) secretTokenRevoke(context.Context, *logical.Request, *framework.FieldData) (*logical.Response, error) {
	return nil, nil
}

// leaseExpiry is the expiry of the lease's token, if the lease carries one.
func leaseExpiry(secret *logical.Secret) (time.Time, bool) {
	raw, _ := secret.InternalData[internalExpiresAt].(string)
	expiresAt, err := time.Parse(time.RFC3339Nano, raw)
	return expiresAt, err == nil
}

// leaseLifetime is the lifetime of the lease's token, if the lease carries it
// (leases from before it do not). Vault keeps internal data as JSON: the
// number may come back as a float64 or a json.Number.
func leaseLifetime(secret *logical.Secret) (time.Duration, bool) {
	var seconds float64
	switch v := secret.InternalData[internalLifetime].(type) {
	case int64:
		seconds = float64(v)
	case float64:
		seconds = v
	case json.Number:
		f, err := v.Float64()
		if err != nil {
			return 0, false
		}
		seconds = f
	default:
		return 0, false
	}
	if seconds < minExpiresIn || seconds > maxExpiresIn {
		return 0, false
	}
	return time.Duration(seconds) * time.Second, true
}
