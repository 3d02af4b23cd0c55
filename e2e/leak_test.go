//go:build e2e

package e2e

import (
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/fakemirakl"
)

// Every test's server is checked for leaks when it ends (testEnv.checkNoLeak).
// This one goes through the paths where a secret is most likely to slip into
// a message: refused credentials, upstream failures, updates, reads of the
// config, and the audit device itself.
func TestNoLeak(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	acme := e.newAccount("acme")
	e.mount("mirakl")
	cli := e.root()

	t.Run("refused credentials", func(t *testing.T) {
		wrong := secretMarker + "-wrong-" + randomHex()
		e.secrets = append(e.secrets, wrong)
		r := cli.MustFail(t, "write", "mirakl/config",
			"client_id="+acme.clientID, "client_secret="+wrong, "token_url="+acme.fake.TokenURL())
		if !strings.Contains(r.Output(), "invalid_client") {
			t.Errorf("a refused write should say what Mirakl answered:\n%s", r.Output())
		}
		if r := cli.Run(t, "read", "mirakl/config"); strings.TrimSpace(r.Stdout) != "" && r.ExitCode == 0 {
			t.Errorf("a refused write stored a config:\n%s", r.Output())
		}
	})

	e.configure("mirakl", acme)
	token := readToken(t, cli, "mirakl")

	t.Run("reads and updates", func(t *testing.T) {
		cli.MustRun(t, "read", "mirakl/config")
		cli.MustRun(t, "read", "-format=json", "mirakl/config")
		cli.MustRun(t, "write", "mirakl/config", "min_ttl=20m")
		cli.MustRun(t, "write", "mirakl/config", "client_secret="+acme.clientSecret, "verify=false")
		cli.MustRun(t, "lease", "lookup", token.LeaseID)
		cli.MustRun(t, "secrets", "list", "-detailed")
		cli.MustRun(t, "audit", "list", "-detailed")
		readToken(t, cli, "mirakl")
	})

	t.Run("upstream failures", func(t *testing.T) {
		cli.MustRun(t, "lease", "revoke", "-sync", "-prefix", "mirakl/token")
		// More faults than the client retries, so that the read fails.
		for range 10 {
			acme.fake.Enqueue(fakemirakl.HTMLError(http.StatusBadGateway))
		}
		r := cli.MustFail(t, "read", "mirakl/token")
		if !strings.Contains(r.Output(), "502") {
			t.Errorf("an upstream failure should be a 502:\n%s", r.Output())
		}
		acme.fake.Enqueue(fakemirakl.OAuthError(http.StatusUnauthorized, "invalid_client", "Client authentication failed"))
		cli.MustFail(t, "write", "mirakl/config", "client_secret="+acme.clientSecret)
	})

	t.Run("the audit log saw the secret, hashed", func(t *testing.T) {
		// The file device's hash of the secret must be in the log: proof that
		// the log holds the config writes and that the check below means something.
		var hashed struct {
			Data struct {
				Hash string `json:"hash"`
			} `json:"data"`
		}
		cli.MustRunJSON(t, &hashed, "write", "-format=json", "sys/audit-hash/file", "input="+acme.clientSecret)
		audit, err := os.ReadFile(e.audit)
		if err != nil {
			t.Fatal(err)
		}
		if hashed.Data.Hash == "" || !strings.Contains(string(audit), hashed.Data.Hash) {
			t.Errorf("the audit log does not hold the hash %q of the client secret", hashed.Data.Hash)
		}
		if !strings.Contains(string(audit), `"access_token":"hmac-sha256:`) {
			t.Error("the audit log holds no hashed access_token: did it see the token reads?")
		}
	})
	// The leak check itself runs when the test ends, after the server stopped.
}
