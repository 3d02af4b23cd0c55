package mirakl

import (
	"net/http"
	"testing"
	"time"
)

// Histories the property test found, shrunk, kept as named cases: each
// failed when the bug it names was put back (the gate letting every request
// through; the stored token not restored), and must keep passing.

// write config with a secret Mirakl does not accept, read, read: the second
// read found the gate open.
func TestPropsRegressionRefusedNewSecretThenTwoReads(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	resp, err := env.WriteConfig(map[string]any{"client_id": testClientID, "client_secret": "a-new-secret", "token_url": env.fake.TokenURL(), "verify": false})
	requireOK(t, resp, err)
	resp, err = env.ReadToken(nil)
	requireStatus(t, resp, err, http.StatusBadGateway, "Mirakl refused the credentials")
	resp, err = env.ReadToken(nil)
	requireStatus(t, resp, err, http.StatusBadGateway, "the next not before")
	if got := env.fake.Requests(); got != 1 {
		t.Fatalf("%d requests, want the one refused", got)
	}
}

// write config (verify, min_ttl 4m), 5 minutes, restart, read: the read got
// a new token instead of the one the check had stored.
func TestPropsRegressionRestartAfterTheConfigCheck(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	env.Configure(map[string]any{"min_ttl": "4m"})
	checked := env.fake.IssuedTokens()[0]
	env.clock.Advance(5 * time.Minute)
	env.restart()
	if _, tok := env.MustReadToken(); tok != checked {
		t.Fatal("the first read after a restart did not get the stored token")
	}
	if got := env.fake.Requests(); got != 1 {
		t.Fatalf("%d requests, want only the config check", got)
	}
}
