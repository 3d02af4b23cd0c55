package mirakl

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

func pathStatus(b *backend) *framework.Path {
	return &framework.Path{
		Pattern: "status",
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefixMirakl,
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{
				Callback: b.pathStatusRead,
				Summary:  "Show the cached token's expiry and the engine's requests to Mirakl, without any secret.",
				// The active node holds the cache and makes the requests.
				ForwardPerformanceStandby:   true,
				ForwardPerformanceSecondary: true,
				DisplayAttrs:                &framework.DisplayAttributes{OperationVerb: "read", OperationSuffix: "status"},
			},
		},
		HelpSynopsis:    pathStatusHelpSynopsis,
		HelpDescription: pathStatusHelpDescription,
	}
}

func pathRoleStatus(b *backend) *framework.Path {
	return &framework.Path{
		Pattern: "status/" + framework.GenericNameRegex(fieldName),
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefixMirakl,
		},
		Fields: map[string]*framework.FieldSchema{
			fieldName: {
				Type:        framework.TypeString,
				Description: "Name of the role.",
			},
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{
				Callback:                    b.pathRoleStatusRead,
				Summary:                     "Show a role's cached token's expiry and its requests to Mirakl, without any secret.",
				ForwardPerformanceStandby:   true,
				ForwardPerformanceSecondary: true,
				DisplayAttrs:                &framework.DisplayAttributes{OperationVerb: "read", OperationSuffix: "role-status"},
			},
		},
		HelpSynopsis:    pathRoleStatusHelpSynopsis,
		HelpDescription: pathRoleStatusHelpDescription,
	}
}

// maxStatusRoles bounds the roles mirakl/status lists, so that its answer
// stays small with thousands of roles: those whose requests are held come
// first, then by name; mirakl/status/:name shows any one of them.
const maxStatusRoles = 100

// pathStatusRead answers from memory: it never touches storage or Mirakl.
func (b *backend) pathStatusRead(_ context.Context, _ *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	requests, failures, lastAt, lastErr := b.metrics.requestsSnapshot()
	data := map[string]any{
		"requests": requests,
		"failures": failures,
	}
	lastRequest(data, lastAt, lastErr)

	mount := b.loadedMount()
	data["config_loaded"] = mount != nil
	if mount == nil {
		return &logical.Response{Data: data}, nil
	}
	now := b.now()
	tokenStatus(data, mount.defaultToken, now)

	// Each role in memory that has a token or a failure; the rest have
	// nothing to show (an idle role holds nothing).
	var shown []*tokenSource
	mount.roles.each(func(src *tokenSource) {
		if src.cache.current() != nil || src.cache.lastFailure() != nil {
			shown = append(shown, src)
		}
	})
	data["roles_active"] = len(shown)
	// Each role's hold read once, not at every comparison.
	held := make(map[*tokenSource]bool, len(shown))
	for _, src := range shown {
		held[src] = src.cache.gateStatus(now).heldAt(now)
	}
	slices.SortFunc(shown, func(x, y *tokenSource) int {
		hx, hy := held[x], held[y]
		if hx != hy {
			if hx {
				return -1
			}
			return 1
		}
		return strings.Compare(x.role, y.role)
	})
	if len(shown) > maxStatusRoles {
		data["roles_omitted"] = len(shown) - maxStatusRoles
		shown = shown[:maxStatusRoles]
	}
	roles := make(map[string]any, len(shown))
	for _, src := range shown {
		role := map[string]any{fieldAudience: src.audience}
		tokenStatus(role, src, now)
		roles[src.role] = role
	}
	data["roles"] = roles
	return &logical.Response{Data: data}, nil
}

// pathRoleStatusRead is one role's status, from memory but for the role
// itself, which a role not in use loads from storage.
func (b *backend) pathRoleStatusRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get(fieldName).(string)
	r, err := readRole(ctx, req.Storage, name)
	if err != nil {
		return nil, err
	}
	if r == nil {
		return logical.ErrorResponse("there is no role %q: vault list %sroles shows the roles", name, req.MountPoint), nil
	}
	data := map[string]any{fieldAudience: r.Audience}
	mount := b.loadedMount()
	var src *tokenSource
	if mount != nil {
		src = mount.sourceFor(name)
	}
	data["in_use"] = src != nil
	if src != nil && src.audience == r.Audience {
		requests, failures, lastAt, lastErr := b.metrics.roleSnapshot(src.metrics)
		data["requests"], data["failures"] = requests, failures
		lastRequest(data, lastAt, lastErr)
		tokenStatus(data, src, b.now())
	}
	return &logical.Response{Data: data}, nil
}

// lastRequest shows how the last request to Mirakl ended, by class and
// status only.
func lastRequest(data map[string]any, lastAt time.Time, lastErr error) {
	if lastAt.IsZero() {
		return
	}
	data["last_request_at"] = formatTime(lastAt)
	outcome, status := describeOutcome(lastErr)
	data["last_request_outcome"] = outcome
	if status != 0 {
		data["last_request_status"] = status
	}
}

// tokenStatus shows src's token and the hold on its requests.
func tokenStatus(data map[string]any, src *tokenSource, now time.Time) {
	if tok := src.cache.current(); tok != nil {
		data["token_fingerprint"] = tok.fingerprint
		data["token_issued_at"] = formatTime(tok.issuedAt)
		data["token_expires_at"] = formatTime(tok.expiresAt)
		data["token_expires_in"] = int64(max(tok.remaining(now), 0).Seconds())
		data["token_read"] = tok.read.Load()
	}
	gate := src.cache.gateStatus(now)
	held := gate.heldAt(now)
	if held {
		data["next_attempt"] = formatTime(gate.reopensAt)
	}
	data["requests_held"] = held
	data["refusal_hold"] = held && gate.refused
	if held && gate.refused {
		data["refusal_hold_until"] = formatTime(gate.reopensAt)
	}
	if src.audience != "" {
		data["audience_refused"] = src.cache.hold.status().refused
	}
}

// describeOutcome names how a request ended by its class and status only:
// never a message that could quote an answer.
func describeOutcome(err error) (outcome string, status int) {
	var upstream *UpstreamError
	switch {
	case err == nil:
		return "token", http.StatusOK
	case errors.As(err, &upstream):
		switch {
		case errors.Is(upstream, ErrCredentialsRefused):
			return "refused", upstream.Status
		case errors.Is(upstream, ErrUnavailable):
			return "unavailable", upstream.Status
		default:
			return "invalid_response", upstream.Status
		}
	case errors.Is(err, errRequestCancelled) || errors.Is(err, context.Canceled):
		return "cancelled", 0
	default:
		return "error", 0
	}
}

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }

const pathStatusHelpSynopsis = `Show how the engine is doing with Mirakl, without any secret.`

const pathStatusHelpDescription = `
Answers from the memory of the active node, without calling Mirakl: the cached
token's fingerprint (a hash, never the token) and expiry, when the last
request to Mirakl was made and how it ended (token, unavailable, refused or
invalid_response, with the HTTP status), when the next background attempt is
due after a failure, whether a refusal hold is on, and how many requests and
failures there were since the plugin started.

Token refreshes happen in the background, where no reader sees a failure until
the cached token runs low: this is where an operator sees them first.

Each role in memory that has a token or a failure is listed under "roles"
with the same token fields (at most 100: those whose requests are held first,
then by name; "roles_omitted" counts the rest, "roles_active" all of them).
mirakl/status/:name shows any one role.

  $ vault read mirakl/status
`

const pathRoleStatusHelpSynopsis = `Show how one role's token is doing with Mirakl, without any secret.`

const pathRoleStatusHelpDescription = `
Answers from the memory of the active node, without calling Mirakl: the role's
audience, whether it is in use (read since its token was last dropped), its
cached token's fingerprint and expiry, its requests to Mirakl and how the last
one ended, and whether its requests are held back: by the mount's gate (no
answer, 5xx, 429, a refused client) or by its own (Mirakl refused its
audience: audience_refused).

  $ vault read mirakl/status/acme
`
