package mirakl

import (
	"context"
	"errors"
	"net/http"
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

// pathStatusRead answers from memory: it never touches storage or Mirakl.
func (b *backend) pathStatusRead(_ context.Context, _ *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	requests, failures, lastAt, lastErr := b.metrics.requestsSnapshot()
	data := map[string]any{
		"requests": requests,
		"failures": failures,
	}
	if !lastAt.IsZero() {
		data["last_request_at"] = formatTime(lastAt)
		outcome, status := describeOutcome(lastErr)
		data["last_request_outcome"] = outcome
		if status != 0 {
			data["last_request_status"] = status
		}
	}

	mount := b.loadedMount()
	data["config_loaded"] = mount != nil
	if mount == nil {
		return &logical.Response{Data: data}, nil
	}
	now := b.now()
	if tok := mount.cache.current(); tok != nil {
		data["token_fingerprint"] = tok.fingerprint
		data["token_issued_at"] = formatTime(tok.issuedAt)
		data["token_expires_at"] = formatTime(tok.expiresAt)
		data["token_expires_in"] = int64(max(tok.remaining(now), 0).Seconds())
		data["token_read"] = tok.read.Load()
	}
	gate := mount.cache.gate.status()
	held := gate.heldAt(now)
	if held {
		data["next_attempt"] = formatTime(gate.reopensAt)
	}
	data["requests_held"] = held
	data["refusal_hold"] = held && gate.refused
	if held && gate.refused {
		data["refusal_hold_until"] = formatTime(gate.reopensAt)
	}
	return &logical.Response{Data: data}, nil
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

  $ vault read mirakl/status
`
