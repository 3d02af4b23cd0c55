package mirakl

import (
	"fmt"
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

func TestTokenRefreshedBelowConfigMinTTL(t *testing.T) {
	env := newTestEnv(t)
	env.Configure(map[string]any{"verify": false, "min_ttl": "15m"})
	_, first := env.MustReadToken()

	env.clock.Advance(44 * time.Minute) // 15m59s left: still enough
	if _, tok := env.MustReadToken(); tok != first {
		t.Fatal("refreshed while min_ttl was still met")
	}
	env.clock.Advance(time.Minute) // 14m59s left
	resp, tok := env.MustReadToken()
	if tok == first {
		t.Fatal("reused a token below min_ttl")
	}
	if resp.Secret.TTL != 3599*time.Second {
		t.Fatalf("new lease TTL = %s", resp.Secret.TTL)
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
		{"not found page", []fakemirakl.Fault{fakemirakl.HTMLError(404)}, testClientSecret, "not a usable token: HTTP 404 (body starts:"},
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
