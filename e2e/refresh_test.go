//go:build e2e

package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/fakemirakl"
	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/vaulttest"
)

// Inside the refresh window readers get the valid cached token without
// waiting on Mirakl: while it hangs, and while it fails, with a warning that
// names the failure; mirakl/status shows what happened; once Mirakl heals,
// the next token comes before the old one expires.
func TestRefreshAheadWhileMiraklMisbehaves(t *testing.T) {
	forEachServer(t, testRefreshAheadWhileMiraklMisbehaves)
}

func testRefreshAheadWhileMiraklMisbehaves(t *testing.T, server vaulttest.Kind) {
	// Tokens of 30s with min_ttl 10s: the refresh point is half their life
	// (min_ttl + 2m, capped at half), 15s after they were issued, and a
	// failure shows in warnings from 20s on, when less than min_ttl is left
	// (below min_ttl a read on a healthy mount would wait for the next token).
	const expiresIn = 30 * time.Second
	// Tokens of 90s for the refusal: the refresh point is 45s before expiry,
	// which leaves room for the 30s refusal hold and one more attempt.
	const refusedExpiresIn = 90 * time.Second
	e := newEnvFor(t, server, vaulttest.Options{})
	// One mount per scenario, so that both run at once.
	hanging := e.newAccount("hanging", fakemirakl.WithExpiresIn(int(expiresIn.Seconds())))
	failing := e.newAccount("failing", fakemirakl.WithExpiresIn(int(expiresIn.Seconds())))
	belowMinTTL := e.newAccount("below-min-ttl", fakemirakl.WithExpiresIn(int(expiresIn.Seconds())))
	refused := e.newAccount("refused", fakemirakl.WithExpiresIn(int(refusedExpiresIn.Seconds())))
	e.mount("mirakl-hanging")
	e.mount("mirakl-failing")
	e.mount("mirakl-below-min-ttl")
	e.mount("mirakl-refused")
	cli := e.root()

	// configure points mount at account a and returns its first token and when it expires.
	configure := func(t *testing.T, mount string, a *account, requestTimeout string) (string, time.Time) {
		e.configure(mount, a, "min_ttl=10s", "request_timeout="+requestTimeout)
		first := readToken(t, cli, mount).accessToken()
		issued, _ := a.fake.IssuedAt(first)
		return first, issued.Add(expiresIn)
	}
	intoRefreshWindow := func(expires time.Time) { time.Sleep(time.Until(expires.Add(-expiresIn/2 + time.Second))) }

	t.Run("Mirakl hanging", func(t *testing.T) {
		t.Parallel()
		// Each attempt may hang for a third of request_timeout, 20s: a
		// read that waited on Mirakl would take that long.
		const mount = "mirakl-hanging"
		acme := hanging
		first, expires := configure(t, mount, acme, "60s")
		acme.fake.FailRandomly(1, fakemirakl.Slow(time.Hour))
		intoRefreshWindow(expires)
		readsAtOnce(t, acme, func() {
			if tok := readToken(t, cli, mount); tok.accessToken() != first {
				t.Fatal("the read did not get the cached token")
			}
		})
	})

	// The config's min_ttl shapes refresh ahead, never a wait: with Mirakl
	// hanging from the refresh point, reads below min_ttl answer at once with
	// the valid cached token and a warning.
	t.Run("Mirakl hanging, reads below min_ttl", func(t *testing.T) {
		t.Parallel()
		const mount = "mirakl-below-min-ttl"
		acme := belowMinTTL
		e.configure(mount, acme, "min_ttl=25s", "request_timeout=60s")
		first := readToken(t, cli, mount).accessToken()
		issued, _ := acme.fake.IssuedAt(first)
		acme.fake.FailRandomly(1, fakemirakl.Slow(time.Hour))
		time.Sleep(time.Until(issued.Add(expiresIn/2 + time.Second))) // 14s left, below min_ttl
		readsAtOnce(t, acme, func() {
			tok := readToken(t, cli, mount)
			if tok.accessToken() != first || len(tok.Warnings) != 1 || !strings.Contains(tok.Warnings[0], "min_ttl") {
				t.Fatalf("the read did not get the cached token with a warning: %v", tok.Warnings)
			}
		})
	})

	// A refusal holds, it does not stop: Mirakl refuses the credentials for a
	// few seconds at the refresh point, then answers again; the token is
	// replaced before it expires, and no read fails.
	t.Run("Mirakl refusing, then recovering", func(t *testing.T) {
		t.Parallel()
		const mount = "mirakl-refused"
		acme := refused
		e.configure(mount, acme, "min_ttl=10s", "request_timeout=10s")
		first := readToken(t, cli, mount).accessToken()
		issued, _ := acme.fake.IssuedAt(first)
		expires := issued.Add(refusedExpiresIn)
		acme.fake.FailRandomly(1, fakemirakl.OAuthError(http.StatusUnauthorized, "invalid_client", "refused"))
		time.Sleep(time.Until(expires.Add(-refusedExpiresIn/2 + time.Second))) // past the refresh point
		readToken(t, cli, mount)                                               // starts the refresh, refused
		eventually(t, 10*time.Second, "the refusal", func() bool { return acme.fake.Stats().Faults > 0 })
		time.Sleep(3 * time.Second)
		acme.fake.FailRandomly(0, fakemirakl.Fault{})
		var next string
		eventually(t, time.Until(expires), "a new token before the old one expires", func() bool {
			next = readToken(t, cli, mount).accessToken() // fails the test if a read fails
			return next != first
		})
		issuedBy(t, acme, next)
		if issued, _ := acme.fake.IssuedAt(next); !issued.Before(expires) {
			t.Errorf("the new token came %s after the old one expired", issued.Sub(expires))
		}
	})

	t.Run("Mirakl answering 503, then healing", func(t *testing.T) {
		t.Parallel()
		const mount = "mirakl-failing"
		acme := failing
		first, expires := configure(t, mount, acme, "10s")
		acme.fake.FailRandomly(1, fakemirakl.HTMLError(http.StatusServiceUnavailable))
		intoRefreshWindow(expires)
		eventually(t, 10*time.Second, "a warning that names the failure", func() bool {
			tok := readToken(t, cli, mount)
			if tok.accessToken() != first {
				t.Fatal("the read did not get the cached token")
			}
			return len(tok.Warnings) == 1 && strings.Contains(tok.Warnings[0], "HTTP 503")
		})

		var status struct {
			Data map[string]any `json:"data"`
		}
		cli.MustRunJSON(t, &status, "read", "-format=json", mount+"/status")
		sum := sha256.Sum256([]byte(first))
		for key, want := range map[string]any{
			"token_fingerprint":    hex.EncodeToString(sum[:8]),
			"last_request_outcome": "unavailable",
			"last_request_status":  float64(503),
			"refusal_hold":         false,
		} {
			if got := status.Data[key]; got != want {
				t.Errorf("status %s = %v, want %v", key, got, want)
			}
		}
		// The engine places the expiry when the answer arrived, a moment after the fake issued it.
		if got, _ := time.Parse(time.RFC3339, status.Data["token_expires_at"].(string)); got.Before(expires.Truncate(time.Second)) || got.After(expires.Add(2*time.Second)) {
			t.Errorf("status token_expires_at %v, want about %s", status.Data["token_expires_at"], expires.UTC())
		}
		if status.Data["next_attempt"] == nil || status.Data["requests_held"] != true || status.Data["failures"].(float64) < 1 {
			t.Errorf("status does not show the failure and the next attempt: %v", status.Data)
		}

		acme.fake.FailRandomly(0, fakemirakl.Fault{})
		var next string
		eventually(t, time.Until(expires)+5*time.Second, "a new token", func() bool {
			sent := time.Now()
			tok := readToken(t, cli, mount)
			if tok.accessToken() == first && !sent.Before(expires) {
				t.Fatal("the expired token was served")
			}
			next = tok.accessToken()
			return next != first
		})
		issuedBy(t, acme, next)
		if issued, _ := acme.fake.IssuedAt(next); !issued.Before(expires) {
			t.Errorf("the new token came %s after the old one expired", issued.Sub(expires))
		}
	})
}

// readsAtOnce runs read five times, with Mirakl (account a) hanging: each
// returns without waiting on it (a read that waited would take a third of
// request_timeout, 20s), and a's fake saw the config's request and the one
// background request.
func readsAtOnce(t *testing.T, a *account, read func()) {
	t.Helper()
	for range 5 {
		sent := time.Now()
		read()
		if took := time.Since(sent); took > 10*time.Second {
			t.Fatalf("a read took %s: it waited on Mirakl", took)
		}
	}
	if got := a.fake.Requests(); got != 2 {
		t.Fatalf("the fake saw %d requests, want the config's and one background request", got)
	}
}
