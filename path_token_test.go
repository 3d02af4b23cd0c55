package mirakl

import (
	"context"
	"errors"
	"fmt"
	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/fakemirakl"
)

func TestTokenReadFresh(t *testing.T) {
	env := newTestEnv(t)
	env.Configure(map[string]any{"verify": false})

	resp, token := env.MustReadToken()
	if !strings.HasPrefix(token, testTokenPrefix) {
		t.Fatalf("access_token %q was not issued by the fake", token)
	}
	if resp.Data["token_type"] != "Bearer" || resp.Data["expires_in"] != int64(3599) {
		t.Fatalf("unexpected data: %#v", resp.Data)
	}
	wantExpiry := env.clock.Now().Add(3599 * time.Second).UTC().Format(time.RFC3339)
	if resp.Data["expires_at"] != wantExpiry {
		t.Fatalf("expires_at = %v, want %s", resp.Data["expires_at"], wantExpiry)
	}
	if _, ok := resp.Data["target_app"]; ok {
		t.Fatal("an empty target_app was returned")
	}
	if resp.Secret == nil || resp.Secret.TTL != 3599*time.Second || resp.Secret.MaxTTL != 3599*time.Second || resp.Secret.Renewable {
		t.Fatalf("lease = %#v, want TTL 3599s, not renewable", resp.Secret)
	}
	if resp.Secret.InternalData["secret_type"] != secretTokenType {
		t.Fatalf("secret type = %v", resp.Secret.InternalData["secret_type"])
	}
	if fmt.Sprint(resp.Secret.InternalData) != fmt.Sprintf("map[secret_type:%s token_fingerprint:%s]", secretTokenType, tokenFingerprint(token)) {
		t.Fatalf("lease internal data = %v, want only the secret type and the token fingerprint", resp.Secret.InternalData)
	}
}

func TestTokenReuseAndLeaseFollowsRemainingLife(t *testing.T) {
	env := newTestEnv(t)
	env.Configure(map[string]any{"verify": false})
	_, first := env.MustReadToken()

	env.clock.Advance(20 * time.Minute)
	resp, second := env.MustReadToken()
	if second != first {
		t.Fatal("a token with 40m left was not reused under min_ttl 10m")
	}
	if resp.Secret.TTL != 2399*time.Second || resp.Data["expires_in"] != int64(2399) {
		t.Fatalf("lease TTL %s / expires_in %v, want the remaining 2399s", resp.Secret.TTL, resp.Data["expires_in"])
	}
	if got := env.fake.Requests(); got != 1 {
		t.Fatalf("reuse called Mirakl: %d requests", got)
	}
}

// A read that finds the token near min_ttl gets it at once, and its successor
// comes in the background, before the token falls below min_ttl.
func TestTokenRefreshedAheadInBackground(t *testing.T) {
	env := newTestEnv(t)
	env.Configure(map[string]any{"verify": false, "min_ttl": "15m"})
	_, first := env.MustReadToken()

	env.clock.Advance(42*time.Minute + 58*time.Second) // 17m1s left: before the refresh point (min_ttl + 2m)
	if _, tok := env.MustReadToken(); tok != first {
		t.Fatal("refreshed before the refresh point")
	}
	env.settle()
	if got := env.fake.Requests(); got != 1 {
		t.Fatalf("the fake saw %d requests before the refresh point, want 1", got)
	}

	env.clock.Advance(2 * time.Second) // 16m59s left: min_ttl still met, the refresh point passed
	resp, tok := env.MustReadToken()
	if tok != first || len(resp.Warnings) != 0 {
		t.Fatalf("the read did not get the cached token at once: %v", resp.Warnings)
	}
	env.settle()
	resp, tok = env.MustReadToken()
	if tok == first {
		t.Fatal("the background refresh did not replace the token")
	}
	if resp.Secret.TTL != 3599*time.Second {
		t.Fatalf("new lease TTL = %s", resp.Secret.TTL)
	}
	if got := env.fake.Requests(); got != 2 {
		t.Fatalf("the fake saw %d requests, want 2", got)
	}
}

func TestTokenPerReadMinTTL(t *testing.T) {
	env := newTestEnv(t)
	env.Configure(map[string]any{"verify": false})
	_, first := env.MustReadToken()
	env.clock.Advance(40 * time.Minute) // 19m59s left

	resp, err := env.ReadToken(map[string]any{"min_ttl": "10m"})
	requireOK(t, resp, err)
	if resp.Data["access_token"] != first {
		t.Fatal("min_ttl=10m did not reuse a token with 19m left")
	}
	resp, err = env.ReadToken(map[string]any{"min_ttl": "30m"})
	requireOK(t, resp, err)
	if resp.Data["access_token"] == first {
		t.Fatal("min_ttl=30m reused a token with 19m left")
	}
	if len(resp.Warnings) != 0 {
		t.Fatalf("unexpected warnings: %v", resp.Warnings)
	}

	resp, err = env.ReadToken(map[string]any{"min_ttl": "soon"})
	requireStatus(t, resp, err, http.StatusBadRequest, "min_ttl")
}

func TestTokenMinTTLBeyondLifetimeWarnsWithoutStorm(t *testing.T) {
	env := newTestEnv(t)
	env.Configure(map[string]any{"verify": false})

	resp, err := env.ReadToken(map[string]any{"min_ttl": "2h"})
	requireOK(t, resp, err)
	if len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], "less than the min_ttl of 2h0m0s") {
		t.Fatalf("want a min_ttl warning, got %v", resp.Warnings)
	}
	first := resp.Data["access_token"]
	for range 5 {
		resp, err = env.ReadToken(map[string]any{"min_ttl": "2h"})
		requireOK(t, resp, err)
	}
	if resp.Data["access_token"] != first || env.fake.Requests() != 1 {
		t.Fatalf("an unmeetable min_ttl caused %d requests", env.fake.Requests())
	}
}

func TestTokenExpiredIsNeverServed(t *testing.T) {
	env := newTestEnv(t, fakemirakl.WithExpiresIn(60))
	env.Configure(map[string]any{"verify": false, "min_ttl": "0s"})
	_, first := env.MustReadToken()

	env.clock.Advance(59 * time.Second)
	if _, tok := env.MustReadToken(); tok != first {
		t.Fatal("a token with 1s left and min_ttl 0 was not reused")
	}
	env.clock.Advance(time.Second)
	if _, tok := env.MustReadToken(); tok == first {
		t.Fatal("an expired token was served")
	}
}

func TestTokenNotConfigured(t *testing.T) {
	env := newTestEnv(t)
	resp, err := env.ReadToken(nil)
	requireStatus(t, resp, err, http.StatusBadRequest, "run vault write mirakl/config client_id=... client_secret=...")
}

func TestTokenConcurrentColdReadsMakeOneRequest(t *testing.T) {
	env := newTestEnv(t)
	env.Configure(map[string]any{"verify": false})
	env.fake.Enqueue(fakemirakl.Slow(200 * time.Millisecond)) // keep the flight open while readers pile up

	const readers = 200
	tokens := make([]string, readers)
	errs := make([]error, readers)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range readers {
		wg.Go(func() {
			<-start
			resp, err := env.ReadToken(nil)
			if err == nil && resp.IsError() {
				err = resp.Error()
			}
			if err == nil {
				tokens[i] = resp.Data["access_token"].(string)
			}
			errs[i] = err
		})
	}
	close(start)
	wg.Wait()

	for i, err := range errs {
		if err != nil {
			t.Fatalf("reader %d: %v", i, err)
		}
		if tokens[i] != tokens[0] {
			t.Fatalf("reader %d got a different token", i)
		}
	}
	if got := env.fake.Requests(); got != 1 {
		t.Fatalf("%d concurrent cold reads made %d requests to Mirakl, want 1", readers, got)
	}
}

func TestTokenUpstreamErrorClasses(t *testing.T) {
	cases := []struct {
		name   string
		faults []fakemirakl.Fault
		secret string
		want   string
	}{
		{"refused credentials", nil, "rotated-away", `Mirakl refused the credentials: HTTP 401, error "invalid_client", Client authentication failed`},
		{"server errors", repeat(fakemirakl.HTMLError(500), 5), testClientSecret, "Mirakl token endpoint unavailable: HTTP 500"},
		{"not a token", []fakemirakl.Fault{fakemirakl.HTMLError(200)}, testClientSecret, "Mirakl answered something that is not a usable token: HTTP 200"},
		{"not found page", []fakemirakl.Fault{fakemirakl.HTMLError(404)}, testClientSecret, "not a usable token: HTTP 404 (text/html, 106 bytes), no OAuth error in the answer"},
		{"zero expires_in", []fakemirakl.Fault{fakemirakl.RawToken(`{"token_type":"Bearer","access_token":"x","expires_in":0}`)}, testClientSecret, "expires_in is 0"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := newTestEnv(t)
			env.Configure(map[string]any{"verify": false, "client_secret": tc.secret})
			env.fake.Enqueue(tc.faults...)
			resp, err := env.ReadToken(nil)
			requireStatus(t, resp, err, http.StatusBadGateway, tc.want)
		})
	}
}

func TestTokenUnreachableIs502(t *testing.T) {
	fake := fakemirakl.New(testClientID, testClientSecret)
	url := fake.TokenURL()
	fake.Close() // nothing listens there any more
	env := newTestEnvWithFake(t, fake)
	resp, err := env.WriteConfig(map[string]any{"client_id": testClientID, "client_secret": testClientSecret, "token_url": url, "verify": false, "request_timeout": "2s"})
	requireOK(t, resp, err)

	resp, err = env.ReadToken(nil)
	requireStatus(t, resp, err, http.StatusBadGateway, "Mirakl token endpoint unavailable")
	if !strings.Contains(err.Error(), "connection refused") && !strings.Contains(err.Error(), "request_timeout") {
		t.Fatalf("error does not say why: %v", err)
	}
}

func repeat(f fakemirakl.Fault, n int) []fakemirakl.Fault {
	out := make([]fakemirakl.Fault, n)
	for i := range out {
		out[i] = f
	}
	return out
}

// waitFor polls cond: a bound on liveness, not a measure of speed.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// Readers never wait on Mirakl while a valid token is cached: with Mirakl
// hanging, a read in the refresh window returns the cached token while the
// background request is still waiting for an answer.
func TestTokenReadInRefreshWindowDoesNotWaitForMirakl(t *testing.T) {
	env := newTestEnv(t)
	env.Configure(map[string]any{"verify": false})
	_, first := env.MustReadToken()
	env.fake.FailRandomly(1, fakemirakl.Slow(time.Hour))

	env.clock.Advance(55 * time.Minute) // 4m59s left: below min_ttl
	for range 20 {
		resp, tok := env.MustReadToken()
		if tok != first {
			t.Fatal("did not serve the cached token")
		}
		if len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], "a new one is on its way") {
			t.Fatalf("warnings: %v", resp.Warnings)
		}
	}
	waitFor(t, "the background request", func() bool { return env.fake.Requests() == 1+1 })
	if got := env.fake.Stats().Issued; got != 1 {
		t.Fatalf("the hanging fake issued %d tokens", got)
	}
}

// A reader that gives up stops waiting for the shared request, which goes on
// for the others.
func TestTokenReaderCancelStopsWaiting(t *testing.T) {
	env := newTestEnv(t)
	env.Configure(map[string]any{"verify": false, "request_timeout": "5m"})
	env.fake.Enqueue(fakemirakl.Slow(time.Hour))

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := env.backend.HandleRequest(ctx, &logical.Request{Operation: logical.ReadOperation, Path: "token", Storage: env.storage})
		done <- err
	}()
	waitFor(t, "the token request", func() bool { return env.fake.Requests() == 1 })
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("want the reader's cancellation, got %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a cancelled reader kept waiting for Mirakl")
	}
}

// No reader's min_ttl makes more than two requests per token lifetime: it is
// honoured up to half the token's life, with a warning beyond.
func TestTokenReaderMinTTLCappedAtHalfLifetime(t *testing.T) {
	env := newTestEnv(t)
	env.Configure(map[string]any{"verify": false})
	_, first := env.MustReadToken()
	env.clock.Advance(time.Minute)

	for range 10 {
		resp, err := env.ReadToken(map[string]any{"min_ttl": "3599"})
		requireOK(t, resp, err)
		if resp.Data["access_token"] != first {
			t.Fatal("min_ttl=3599 replaced a fresh token")
		}
		if len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], "shared until it has half its life (30m0s) left") {
			t.Fatalf("warnings: %v", resp.Warnings)
		}
	}
	env.clock.Advance(29 * time.Minute) // 29m59s left: below half
	resp, err := env.ReadToken(map[string]any{"min_ttl": "3599"})
	requireOK(t, resp, err)
	if resp.Data["access_token"] == first {
		t.Fatal("a reader wanting more than the cached token has did not get a new one")
	}
	if got := env.fake.Requests(); got != 2 {
		t.Fatalf("the fake saw %d requests, want 2", got)
	}
}

// A read in flight across a config change never hands out a token of the
// credentials that were replaced or deleted.
func TestTokenReadAcrossConfigChange(t *testing.T) {
	t.Run("delete", func(t *testing.T) {
		env := newTestEnv(t)
		env.Configure(map[string]any{"verify": false})
		env.fake.Enqueue(fakemirakl.Slow(200 * time.Millisecond))
		done := make(chan *logical.Response, 1)
		go func() {
			resp, _ := env.ReadToken(nil)
			done <- resp
		}()
		waitFor(t, "the token request", func() bool { return env.fake.Requests() == 1 })
		resp, err := env.DeleteConfig()
		requireOK(t, resp, err)
		requireUserError(t, <-done, nil, "not configured")
	})
	t.Run("rotation", func(t *testing.T) {
		env := newTestEnv(t)
		env.Configure(map[string]any{"verify": false})
		env.fake.Enqueue(fakemirakl.Slow(200 * time.Millisecond))
		rotated := fakemirakl.New(testClientID, "rotated-secret", fakemirakl.WithTokenPrefix("rotated-"))
		t.Cleanup(rotated.Close)
		done := make(chan *logical.Response, 1)
		go func() {
			resp, _ := env.ReadToken(nil)
			done <- resp
		}()
		waitFor(t, "the token request", func() bool { return env.fake.Requests() == 1 })
		resp, err := env.WriteConfig(map[string]any{"token_url": rotated.TokenURL(), "client_secret": "rotated-secret", "verify": false})
		requireOK(t, resp, err)
		resp = <-done
		requireOK(t, resp, nil)
		if tok := resp.Data["access_token"].(string); !strings.HasPrefix(tok, "rotated-") {
			t.Fatalf("the read handed out %q, a token of the replaced credentials", tok)
		}
	})
}

// refreshAhead is Vault's periodic call (about once a minute, active node).
func (e *testEnv) periodic() {
	e.t.Helper()
	if err := e.backend.refreshAhead(e.ctx, &logical.Request{Storage: e.storage}); err != nil {
		e.t.Fatal(err)
	}
	e.settle()
}

func TestPeriodicRefreshesReadTokenBeforeMinTTL(t *testing.T) {
	env := newTestEnv(t)
	env.Configure(map[string]any{"verify": false})
	_, first := env.MustReadToken()

	env.clock.Advance(47 * time.Minute) // 12m59s left: not yet
	env.periodic()
	env.clock.Advance(time.Minute) // 11m59s left: within min_ttl + 2m
	env.periodic()
	if got := env.fake.Requests(); got != 2 {
		t.Fatalf("the fake saw %d requests, want 2", got)
	}
	env.clock.Advance(time.Minute)
	resp, tok := env.MustReadToken()
	if tok == first || len(resp.Warnings) != 0 || resp.Secret.TTL < 10*time.Minute {
		t.Fatalf("the reader did not find a fresh token: %v %v", resp.Secret.TTL, resp.Warnings)
	}
}

// Only a token that somebody read is worth a request: an idle mount makes none.
func TestPeriodicIdleMountFetchesNothing(t *testing.T) {
	env := newTestEnv(t)
	env.Configure(nil) // verify: one request, the token is cached unread
	for range 120 {
		env.clock.Advance(time.Minute)
		env.periodic()
	}
	if got := env.fake.Requests(); got != 1 {
		t.Fatalf("an idle mount made %d requests, want only the verification", got)
	}
}

func TestPeriodicOnStandbyFetchesNothing(t *testing.T) {
	for _, state := range []consts.ReplicationState{consts.ReplicationPerformanceStandby, consts.ReplicationPerformanceSecondary} {
		env := newTestEnv(t)
		env.Configure(map[string]any{"verify": false})
		env.MustReadToken()
		env.backend.System().(*rememberedLocalMount).SystemView.(*logical.StaticSystemView).ReplicationStateVal = state
		env.clock.Advance(50 * time.Minute)
		env.periodic()
		if got := env.fake.Requests(); got != 1 {
			t.Fatalf("replication state %v: the periodic call made %d requests", state, got-1)
		}
	}
}

// During an outage, background attempts spread out (backoff, Retry-After),
// readers keep the cached token, and a refusal stops the attempts.
func TestBackgroundRetriesDuringOutage(t *testing.T) {
	env := newTestEnv(t)
	env.Configure(map[string]any{"verify": false, "request_timeout": "10s"})
	_, first := env.MustReadToken()
	env.clock.Advance(48 * time.Minute) // 11m59s left: refresh due

	// Retry-After longer than request_timeout: each attempt is one request.
	env.fake.FailRandomly(1, fakemirakl.RateLimited("120"))
	readAll := func() {
		t.Helper()
		if _, tok := env.MustReadToken(); tok != first {
			t.Fatal("did not serve the cached token")
		}
		env.settle()
	}
	readAll()
	if got := env.fake.Requests(); got != 2 {
		t.Fatalf("first attempt: %d requests", got)
	}
	for range 10 {
		env.clock.Advance(10 * time.Second)
		readAll() // within the 120s Mirakl asked for: no request
	}
	if got := env.fake.Requests(); got != 2 {
		t.Fatalf("Retry-After not honoured: %d requests", got)
	}
	env.clock.Advance(20 * time.Second)
	readAll()
	if got := env.fake.Requests(); got != 3 {
		t.Fatalf("after Retry-After: %d requests, want 3", got)
	}

	// Without Retry-After, attempts back off: at most one per 5s..1m window.
	env.fake.FailRandomly(1, fakemirakl.Fault{Status: 401, Body: `{"error":"invalid_client"}`, ContentType: "application/json"})
	env.clock.Advance(2 * time.Minute)
	readAll() // refused
	refused := env.fake.Requests()
	for range 7 { // until just before the token expires
		env.clock.Advance(time.Minute)
		env.periodic()
		readAll()
	}
	if got := env.fake.Requests(); got != refused {
		t.Fatalf("background attempts went on after a refusal: %d requests", got-refused)
	}
}

func TestBackgroundBackoffGrows(t *testing.T) {
	env := newTestEnv(t)
	env.backend.retries = retryPolicy{MaxRetries: 0} // one request per attempt
	env.Configure(map[string]any{"verify": false, "request_timeout": "10s"})
	env.MustReadToken()
	env.clock.Advance(48 * time.Minute)
	env.fake.FailRandomly(1, fakemirakl.HTMLError(503))

	// One read a second for ten minutes: the first attempt, then waits of
	// about 5s, 10s, 20s, 40s, then a minute (each jittered down to half).
	for range 600 {
		env.MustReadToken()
		env.settle()
		env.clock.Advance(time.Second)
	}
	if got := env.fake.Requests() - 1; got < 8 || got > 25 {
		t.Fatalf("600 reads in ten minutes of outage made %d requests, want between 8 and 25", got)
	}
}
