package mirakl

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/fakemirakl"
)

func TestTokenReadFresh(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	env.Configure(map[string]any{"verify": false})

	resp, token := env.MustReadToken()
	if !strings.HasPrefix(token, testTokenPrefix) {
		t.Fatalf("access_token %q was not issued by the fake", token)
	}
	expiresAt := env.clock.Now().Add(3599 * time.Second).UTC()
	// Mirakl's empty target_app and resource_owner are left out.
	requireData(t, "token read", resp.Data, map[string]any{
		"access_token": token,
		"token_type":   "Bearer",
		"expires_in":   int64(3599),
		"expires_at":   expiresAt.Format(time.RFC3339),
	})
	// What a renewal needs, and never the token itself.
	requireData(t, "lease internal data", resp.Secret.InternalData, map[string]any{
		"secret_type":       secretTokenType,
		internalFingerprint: tokenFingerprint(token),
		internalExpiresAt:   expiresAt.Format(time.RFC3339Nano),
		internalLifetime:    int64(3599),
	})
	if lease := resp.Secret.LeaseOptions; lease.TTL != 3599*time.Second || lease.MaxTTL != lease.TTL || !lease.Renewable {
		t.Fatalf("lease = %+v, want TTL and max TTL 3599s, renewable", lease)
	}
}

// What Mirakl says of a token's application and owner reaches the reader.
func TestTokenReadCarriesTargetAppAndResourceOwner(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	env.Configure(map[string]any{"verify": false})
	env.fake.Enqueue(fakemirakl.RawToken(`{"token_type":"Bearer","access_token":"` + testTokenPrefix + `app","expires_in":3599,` +
		`"target_app":"app-42","resource_owner":"shop-7"}`))

	resp, token := env.MustReadToken()
	requireData(t, "token read", resp.Data, map[string]any{
		"access_token":   token,
		"token_type":     "Bearer",
		"expires_in":     int64(3599),
		"expires_at":     env.clock.Now().Add(3599 * time.Second).UTC().Format(time.RFC3339),
		"target_app":     "app-42",
		"resource_owner": "shop-7",
	})
}

// Leases are whole seconds. Time passes while a read is served: a fresh
// token's lease is still Mirakl's expires_in, and no lease is ever shorter
// than a second, which Vault would take as "use the default TTL" (768h).
func TestTokenLeaseInWholeSeconds(t *testing.T) {
	t.Parallel()
	t.Run("fresh token", func(t *testing.T) {
		t.Parallel()
		env := newTestEnv(t)
		env.Configure(map[string]any{"verify": false})
		env.clock.PassEachRead(10 * time.Millisecond)
		resp, _ := env.MustReadToken()
		// Some 10ms steps passed since Mirakl answered: the lease is rounded
		// down to the whole seconds the token still has.
		if resp.Secret.TTL != 3598*time.Second || resp.Data["expires_in"] != int64(3598) {
			t.Fatalf("lease TTL %s, expires_in %v: want 3598s, the whole seconds left of Mirakl's 3599s", resp.Secret.TTL, resp.Data["expires_in"])
		}
	})
	t.Run("last second", func(t *testing.T) {
		t.Parallel()
		env := newTestEnv(t, fakemirakl.WithExpiresIn(60))
		env.Configure(map[string]any{"verify": false, "min_ttl": "0s"})
		// The token is judged servable (a second or more left) at one read of
		// the clock and its lease computed at a later one: whatever number of
		// reads come first, some of these lives put the judgement on the last
		// second and the lease past it.
		for left := time.Second; left <= 4*time.Second; left += 100 * time.Millisecond {
			env.backend.forgetToken()
			env.MustReadToken()
			env.clock.Advance(time.Minute - left)
			env.clock.PassEachRead(600 * time.Millisecond)
			resp, _ := env.MustReadToken()
			env.clock.PassEachRead(0)
			env.settle()
			if resp.Secret.TTL < time.Second || resp.Data["expires_in"] != int64(resp.Secret.TTL.Seconds()) {
				t.Fatalf("%s left: lease TTL %s, expires_in %v", left, resp.Secret.TTL, resp.Data["expires_in"])
			}
		}
	})
}

func TestTokenReuseAndLeaseFollowsRemainingLife(t *testing.T) {
	t.Parallel()
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
	t.Parallel()
	env := newTestEnv(t)
	env.Configure(map[string]any{"verify": false, "min_ttl": "15m"})
	_, first := env.MustReadToken()

	requireNoRefresh := func(left string) {
		t.Helper()
		if _, tok := env.MustReadToken(); tok != first {
			t.Fatalf("%s left: refreshed before the refresh point", left)
		}
		env.settle()
		if got := env.fake.Requests(); got != 1 {
			t.Fatalf("%s left: the fake saw %d requests before the refresh point, want 1", left, got)
		}
	}
	env.clock.Advance(42*time.Minute + 58*time.Second) // before the refresh point (min_ttl + 2m)
	requireNoRefresh("17m1s")
	env.clock.Advance(time.Second) // on it, not past it
	requireNoRefresh("17m0s")

	env.clock.Advance(time.Second) // 16m59s left: min_ttl still met, the refresh point passed
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
	t.Parallel()
	env := newTestEnv(t)
	env.Configure(map[string]any{"verify": false})
	_, first := env.MustReadToken()
	env.clock.Advance(40 * time.Minute) // 19m59s left

	for _, minTTL := range []string{"10m", "19m59s"} {
		resp, err := env.ReadToken(map[string]any{"min_ttl": minTTL})
		requireOK(t, resp, err)
		if resp.Data["access_token"] != first || len(resp.Warnings) != 0 {
			t.Fatalf("min_ttl=%s did not get the token with 19m59s left at once: warnings %v", minTTL, resp.Warnings)
		}
	}
	env.settle()
	if got := env.fake.Requests(); got != 1 {
		t.Fatalf("reads whose min_ttl the cached token meets made %d requests", got-1)
	}
	resp, err := env.ReadToken(map[string]any{"min_ttl": "30m"})
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
	t.Parallel()
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
	t.Parallel()
	env := newTestEnv(t, fakemirakl.WithExpiresIn(60))
	env.Configure(map[string]any{"verify": false, "min_ttl": "0s"})
	_, first := env.MustReadToken()

	env.clock.Advance(58 * time.Second)
	if _, tok := env.MustReadToken(); tok != first {
		t.Fatal("a token with 2s left and min_ttl 0 was not reused")
	}
	// A second left: a lease rounded down to whole seconds could outlive it.
	env.clock.Advance(time.Second)
	if _, tok := env.MustReadToken(); tok == first {
		t.Fatal("a token with a second left was served")
	}
}

func TestTokenNotConfigured(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	resp, err := env.ReadToken(nil)
	requireStatus(t, resp, err, http.StatusBadRequest, "run vault write mirakl/config client_id=... client_secret=...")
}

func TestTokenConcurrentColdReadsMakeOneRequest(t *testing.T) {
	t.Parallel()
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
	waitGroup(t, "the concurrent cold reads", &wg)

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
	t.Parallel()
	cases := []struct {
		name   string
		faults []fakemirakl.Fault
		secret string
		want   string
	}{
		{"refused credentials", nil, "rotated-away", `Mirakl refused the credentials: HTTP 401, error "invalid_client"`},
		{"server errors", repeat(fakemirakl.HTMLError(500), 5), testClientSecret, "Mirakl token endpoint unavailable: HTTP 500"},
		{"not a token", []fakemirakl.Fault{fakemirakl.HTMLError(200)}, testClientSecret, "Mirakl answered something that is not a usable token: HTTP 200"},
		{"not found page", []fakemirakl.Fault{fakemirakl.HTMLError(404)}, testClientSecret, "not a usable token: HTTP 404 (text/html, 106 bytes), no OAuth error in the answer"},
		{"zero expires_in", []fakemirakl.Fault{fakemirakl.RawToken(`{"token_type":"Bearer","access_token":"x","expires_in":0}`)}, testClientSecret, "expires_in is too short (0; want at least 3 seconds)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := newTestEnv(t)
			env.Configure(map[string]any{"verify": false, "client_secret": tc.secret})
			env.fake.Enqueue(tc.faults...)
			resp, err := env.ReadToken(nil)
			requireStatus(t, resp, err, http.StatusBadGateway, tc.want)
		})
	}
}

func TestTokenUnreachableIs502(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	// Port 1 (tcpmux) is privileged and never an ephemeral port: no parallel
	// test's server can be listening there, as one could on a closed fake's port.
	resp, err := env.WriteConfig(map[string]any{"client_id": testClientID, "client_secret": testClientSecret,
		"token_url": "http://127.0.0.1:1/oauth/token", "verify": false, "request_timeout": "2s"})
	requireOK(t, resp, err)

	resp, err = env.ReadToken(nil)
	requireStatus(t, resp, err, http.StatusBadGateway, "Mirakl token endpoint unavailable: connection refused")
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
	t.Parallel()
	env := newTestEnv(t)
	// Long enough for the reads to finish while the background request waits;
	// short enough that a reader that waits fails without delaying the suite.
	env.Configure(map[string]any{"verify": false, "request_timeout": "3s"})
	_, first := env.MustReadToken()
	env.fake.FailRandomly(1, fakemirakl.Slow(time.Hour))

	env.clock.Advance(48*time.Minute + 30*time.Second) // 11m29s left: above min_ttl, past the refresh point
	for range 20 {
		resp, tok := env.MustReadToken()
		if tok != first {
			t.Fatal("did not serve the cached token")
		}
		if len(resp.Warnings) != 0 {
			t.Fatalf("warnings: %v", resp.Warnings)
		}
	}
	waitFor(t, "the background request", func() bool { return env.fake.Requests() > 1 })
	if got := env.fake.Stats().Issued; got != 1 {
		t.Fatalf("the hanging fake issued %d tokens", got)
	}
}

// A reader that gives up stops waiting for the shared request, which goes on
// for the others.
func TestTokenReaderCancelStopsWaiting(t *testing.T) {
	t.Parallel()
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
	t.Parallel()
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
	t.Parallel()
	t.Run("delete", func(t *testing.T) {
		t.Parallel()
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
		requireUserError(t, receive(t, "the read across the delete", done), nil, "not configured")
	})
	t.Run("rotation", func(t *testing.T) {
		t.Parallel()
		env := newTestEnv(t)
		env.Configure(map[string]any{"verify": false})
		env.fake.Enqueue(fakemirakl.Slow(200 * time.Millisecond))
		rotated := fakemirakl.New(testClientID, "rotated-secret", fakemirakl.WithTokenPrefix("rotated-"))
		t.Cleanup(rotated.Close)
		t.Cleanup(func() { requireNoViolations(t, rotated) })
		done := make(chan *logical.Response, 1)
		go func() {
			resp, _ := env.ReadToken(nil)
			done <- resp
		}()
		waitFor(t, "the token request", func() bool { return env.fake.Requests() == 1 })
		resp, err := env.WriteConfig(map[string]any{"token_url": rotated.TokenURL(), "client_secret": "rotated-secret", "verify": false})
		requireOK(t, resp, err)
		resp = receive(t, "the read across the rotation", done)
		requireOK(t, resp, nil)
		if tok := resp.Data["access_token"].(string); !strings.HasPrefix(tok, "rotated-") {
			t.Fatalf("the read handed out %q, a token of the replaced credentials", tok)
		}
	})
}

// A reader that found the cached token wanting and asks for a new one just
// after another reader's request for one ended gets that request's token:
// the request is not repeated. Readers get there only by a race, so the test
// calls fetch as such a reader would, with the token it found.
func TestFetchAfterAnotherRequestEndedTakesItsToken(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	env.Configure(map[string]any{"verify": false})
	env.MustReadToken()
	mount := env.backend.loadedMount()
	found := mount.defaultToken.cache.current()
	fetchAfter := func(found *cachedToken) *cachedToken {
		t.Helper()
		tok, err := env.backend.fetch(env.ctx, mount, mount.defaultToken, found, forReader, 0)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}

	env.clock.Advance(50 * time.Minute)
	resp, err := env.ReadToken(map[string]any{"min_ttl": "30m"}) // waits for a new token
	requireOK(t, resp, err)
	if tok := fetchAfter(found); tok.AccessToken != resp.Data["access_token"] || env.fake.Requests() != 2 {
		t.Fatalf("the request that had just ended was repeated: %d requests", env.fake.Requests())
	}

	// A token with half its life or less left is no answer to a need for a new one.
	env.clock.Advance(3599 * time.Second / 2)
	if tok := fetchAfter(found); tok.AccessToken == resp.Data["access_token"] || env.fake.Requests() != 3 {
		t.Fatalf("a token with half its life left was taken for a new one: %d requests", env.fake.Requests())
	}
	// Nor is the token the reader found itself.
	current := mount.defaultToken.cache.current()
	if tok := fetchAfter(current); tok == current || env.fake.Requests() != 4 {
		t.Fatalf("the token found was taken for a new one: %d requests", env.fake.Requests())
	}
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
	t.Parallel()
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
	t.Parallel()
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
	t.Parallel()
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
	t.Parallel()
	env := newTestEnv(t)
	env.Configure(map[string]any{"verify": false, "request_timeout": "1s"})
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

	// A refusal holds, it does not stop: background attempts go on, 30s
	// doubling to 5m (jittered), and the first one after Mirakl recovers
	// replaces the token before it expires.
	env.fake.FailRandomly(1, fakemirakl.Fault{Status: 401, Body: `{"error":"invalid_client"}`, ContentType: "application/json"})
	env.clock.Advance(2 * time.Minute) // 9m59s left
	readAll()                          // refused
	refused := env.fake.Requests()
	for range 4 {
		env.clock.Advance(time.Minute)
		env.periodic()
		readAll()
	}
	if got := env.fake.Requests() - refused; got < 2 || got > 3 {
		t.Fatalf("in the 4 minutes after a refusal: %d background attempts, want 2 or 3 (30s doubling)", got)
	}
	env.fake.FailRandomly(0, fakemirakl.Fault{}) // Mirakl accepts the credentials again
	for range 5 {                                // until a minute before the token expires
		env.clock.Advance(time.Minute)
		env.periodic()
		if _, tok := env.MustReadToken(); tok != first {
			return // replaced in time
		}
		env.settle()
	}
	t.Fatal("the token was not replaced before it expired after Mirakl recovered from a refusal")
}

func TestBackgroundBackoffGrows(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	env.backend.retries = retryPolicy{MaxRetries: 0} // one request per attempt
	env.Configure(map[string]any{"verify": false, "request_timeout": "10s"})
	env.MustReadToken()
	env.clock.Advance(48 * time.Minute)
	env.fake.FailRandomly(1, fakemirakl.HTMLError(503))

	// One read a second for ten minutes. After the n-th failure in a row, the
	// next attempt waits 5s doubled n-1 times, at most a minute, jittered down
	// to as little as half: about one request a minute once the outage lasts.
	var attempts []time.Time
	for range 600 {
		before := env.fake.Requests()
		env.MustReadToken()
		env.settle()
		if env.fake.Requests() > before {
			attempts = append(attempts, env.clock.Now())
		}
		env.clock.Advance(time.Second)
	}
	if len(attempts) < 12 {
		t.Fatalf("600 reads in ten minutes of outage made %d attempts, want at least 12", len(attempts))
	}
	for n := 1; n < len(attempts); n++ {
		ceiling := min(5*time.Second<<(n-1), time.Minute)
		// The reads come a second apart: an attempt is due at most a second late.
		if gap := attempts[n].Sub(attempts[n-1]); gap < ceiling/2 || gap > ceiling+time.Second {
			t.Errorf("after failure %d the next attempt came %s later, want %s to %s", n, gap, ceiling/2, ceiling)
		}
	}
}
