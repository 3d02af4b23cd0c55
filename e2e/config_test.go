//go:build e2e

package e2e

import (
	"strings"
	"testing"

	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/vaulttest"
)

// The config as the README uses it, and what a config writer or a reader
// cannot make the engine do.
func TestConfigAndReaders(t *testing.T) { forEachServer(t, testConfigAndReaders) }

func testConfigAndReaders(t *testing.T, server vaulttest.Kind) {
	e := newEnvFor(t, server, vaulttest.Options{})
	acme := e.newAccount("acme")
	elsewhere := e.newAccount("elsewhere")
	e.mount("mirakl")
	cli := e.root()

	t.Run("the README's stdin command", func(t *testing.T) {
		// vault write mirakl/config client_id=... client_secret=- <<<"$MIRAKL_CLIENT_SECRET"
		// (the here-string appends a newline).
		cli.WithStdin(acme.clientSecret+"\n").MustRun(t, "write", "mirakl/config",
			"client_id="+acme.clientID, "client_secret=-", "token_url="+acme.fake.TokenURL())
		issuedBy(t, acme, readToken(t, cli, "mirakl").accessToken())
	})

	t.Run("moving token_url needs the secret", func(t *testing.T) {
		r := cli.MustFail(t, "write", "mirakl/config", "token_url="+elsewhere.fake.TokenURL(), "verify=false")
		if !strings.Contains(r.Output(), "Code: 400") || !strings.Contains(r.Output(), "requires client_secret in the same write") {
			t.Errorf("want a 400 that says why:\n%s", r.Output())
		}
		cli.MustRun(t, "write", "mirakl/config", "verify=false") // drops the cached token
		issuedBy(t, acme, readToken(t, cli, "mirakl").accessToken())
		if got := elsewhere.fake.Requests(); got != 0 {
			t.Fatalf("the other endpoint received %d requests", got)
		}
		cli.MustRun(t, "write", "mirakl/config", "min_ttl=5m") // other fields need no secret
	})

	t.Run("a reader's min_ttl cannot cost the others their token", func(t *testing.T) {
		before := acme.fake.Requests()
		for range 10 {
			cli.MustRun(t, "read", "-format=json", "mirakl/token", "min_ttl=3599")
		}
		if got := acme.fake.Requests() - before; got > 2 {
			t.Fatalf("ten reads with min_ttl=3599 made %d requests to Mirakl, want at most 2", got)
		}
	})
}
