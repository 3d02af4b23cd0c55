package mirakl

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/fakemirakl"
)

func (e *testEnv) ReadStatus() map[string]any {
	e.t.Helper()
	resp, err := e.request(logical.ReadOperation, "status", nil)
	requireOK(e.t, resp, err)
	return resp.Data
}

// What an operator sees at mirakl/status through a token's life: requests
// and how they ended, the backoff and Retry-After of background refreshes,
// a refusal hold and its end, an expired token, a new config.
func TestStatusFollowsRequestsToMirakl(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	at := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	with := func(fields ...map[string]any) map[string]any {
		all := map[string]any{}
		for _, f := range fields {
			maps.Copy(all, f)
		}
		return all
	}

	requireData(t, "before any config", env.ReadStatus(), map[string]any{
		"requests": uint64(0), "failures": uint64(0), "config_loaded": false,
	})

	env.Configure(map[string]any{"verify": false, "request_timeout": "1s"})
	noHold := map[string]any{"config_loaded": true, "requests_held": false, "refusal_hold": false, "roles": map[string]any{}, "roles_active": 0}
	requireData(t, "configured", env.ReadStatus(), with(noHold, map[string]any{
		"requests": uint64(0), "failures": uint64(0),
	}))

	issued := env.clock.Now()
	_, token := env.MustReadToken()
	tokenFields := map[string]any{
		"token_fingerprint": tokenFingerprint(token),
		"token_issued_at":   at(issued),
		"token_expires_at":  at(issued.Add(3599 * time.Second)),
		"token_read":        true,
	}
	requireData(t, "after a token", env.ReadStatus(), with(noHold, tokenFields, map[string]any{
		"requests": uint64(1), "failures": uint64(0), "token_expires_in": int64(3599),
		"last_request_at": at(issued), "last_request_outcome": "token", "last_request_status": http.StatusOK,
	}))

	// A background refresh that Mirakl rate-limits for longer than
	// request_timeout: the next attempt waits for its Retry-After.
	env.clock.Advance(50 * time.Minute)
	env.fake.FailRandomly(1, fakemirakl.RateLimited("120"))
	limitedAt := env.clock.Now()
	env.MustReadToken()
	env.settle()
	requireData(t, "after a rate-limited refresh", env.ReadStatus(), with(noHold, tokenFields, map[string]any{
		"requests": uint64(2), "failures": uint64(1), "token_expires_in": int64(599),
		"last_request_at": at(limitedAt), "last_request_outcome": "unavailable", "last_request_status": http.StatusTooManyRequests,
		"requests_held": true, "next_attempt": at(limitedAt.Add(2 * time.Minute)),
	}))

	// Mirakl refuses the credentials: requests are held for 30s.
	env.clock.Advance(2 * time.Minute)
	env.fake.FailRandomly(0, fakemirakl.Fault{})
	env.fake.SetCredentials(testClientID, "rotated-at-mirakl")
	refusedAt := env.clock.Now()
	env.MustReadToken()
	env.settle()
	refused := map[string]any{
		"requests": uint64(3), "failures": uint64(2),
		"last_request_at": at(refusedAt), "last_request_outcome": "refused", "last_request_status": http.StatusUnauthorized,
		"config_loaded": true, "roles": map[string]any{}, "roles_active": 0,
	}
	env.clock.Advance(10 * time.Second) // past the backoff (at most 10s after a second failure), within the hold
	requireData(t, "during the refusal hold", env.ReadStatus(), with(refused, tokenFields, map[string]any{
		"token_expires_in": int64(469), "refusal_hold": true, "refusal_hold_until": at(refusedAt.Add(30 * time.Second)),
		"requests_held": true, "next_attempt": at(refusedAt.Add(30 * time.Second)),
	}))
	env.clock.Advance(20 * time.Second)
	requireData(t, "after the refusal hold", env.ReadStatus(), with(refused, tokenFields, map[string]any{
		"token_expires_in": int64(449), "refusal_hold": false, "requests_held": false,
	}))
	env.clock.Advance(time.Hour)
	requireData(t, "with the token expired", env.ReadStatus(), with(refused, tokenFields, map[string]any{
		"token_expires_in": int64(0), "refusal_hold": false, "requests_held": false,
	}))

	// A new config verifies its credentials: that token is cached, unread.
	env.fake.SetCredentials(testClientID, testClientSecret)
	env.Configure(nil)
	verifiedAt := env.clock.Now()
	tokens := env.fake.IssuedTokens()
	requireData(t, "after a new config", env.ReadStatus(), with(noHold, map[string]any{
		"requests": uint64(4), "failures": uint64(2),
		"last_request_at": at(verifiedAt), "last_request_outcome": "token", "last_request_status": http.StatusOK,
		"token_fingerprint": tokenFingerprint(tokens[len(tokens)-1]),
		"token_issued_at":   at(verifiedAt),
		"token_expires_at":  at(verifiedAt.Add(3599 * time.Second)),
		"token_expires_in":  int64(3599),
		"token_read":        false,
	}))
}

// Status names how the last request ended by its class and status only.
func TestStatusOutcomes(t *testing.T) {
	t.Parallel()
	cases := []struct {
		err     error
		outcome string
		status  int
	}{
		{nil, "token", http.StatusOK},
		{&UpstreamError{Kind: ErrCredentialsRefused, Status: http.StatusBadRequest}, "refused", http.StatusBadRequest},
		{&UpstreamError{Kind: ErrUnavailable, Status: http.StatusServiceUnavailable}, "unavailable", http.StatusServiceUnavailable},
		{&UpstreamError{Kind: ErrUnavailable}, "unavailable", 0}, // no answer at all
		{fmt.Errorf("fetching: %w", &UpstreamError{Kind: ErrInvalidResponse, Status: http.StatusOK}), "invalid_response", http.StatusOK},
		{fmt.Errorf("gave up waiting for a token: %w", context.Canceled), "cancelled", 0},
		{errors.New("building the token request: bad URL"), "error", 0},
	}
	for _, tc := range cases {
		if outcome, status := describeOutcome(tc.err); outcome != tc.outcome || status != tc.status {
			t.Errorf("%v: outcome %q, status %d; want %q, %d", tc.err, outcome, status, tc.outcome, tc.status)
		}
	}
}
