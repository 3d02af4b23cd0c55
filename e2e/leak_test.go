//go:build e2e

package e2e

import (
	"encoding/json"
	"html"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/fakemirakl"
	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/vaulttest"
)

// Every test's server is checked for leaks when it ends (testEnv.checkNoLeak).
// This one goes through the paths where a secret is most likely to slip into
// a message: refused credentials, upstream failures, updates, reads of the
// config, and the audit device itself.
func TestNoLeak(t *testing.T) { forEachServer(t, testNoLeak) }

func testNoLeak(t *testing.T, server vaulttest.Kind) {
	e := newEnvFor(t, server, vaulttest.Options{})
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
		// A config write without verify drops the cached token, asking nothing.
		cli.MustRun(t, "write", "mirakl/config", "verify=false")
		// One failure per attempt of the read (the first and four retries).
		for range 5 {
			acme.fake.Enqueue(fakemirakl.HTMLError(http.StatusBadGateway))
		}
		r := cli.MustFail(t, "read", "mirakl/token")
		if !strings.Contains(r.Output(), "Code: 502") || !strings.Contains(r.Output(), "HTTP 502 (text/html") {
			t.Errorf("an upstream failure should be a 502 that names Mirakl's answer:\n%s", r.Output())
		}
		acme.fake.Enqueue(fakemirakl.OAuthError(http.StatusUnauthorized, "invalid_client", "Client authentication failed"))
		r = cli.MustFail(t, "write", "mirakl/config", "client_secret="+acme.clientSecret)
		if !strings.Contains(r.Output(), "Code: 400") || !strings.Contains(r.Output(), `error "invalid_client": Client authentication failed`) {
			t.Errorf("a refusal on a config write that sent the secret should be a 400 that names the OAuth error and its description:\n%s", r.Output())
		}
	})

	t.Run("an upstream that echoes the request", func(t *testing.T) {
		cli.MustRun(t, "write", "mirakl/config", "verify=false")
		echoes := []fakemirakl.Fault{
			{Status: http.StatusBadRequest, ContentType: "application/json", Echo: func(form string) string {
				decoded, _ := url.QueryUnescape(form)
				raw, _ := json.Marshal(map[string]string{"error": "invalid_request", "error_description": "got " + decoded + " / " + form})
				return string(raw)
			}},
			{Status: http.StatusOK, ContentType: "text/plain", Echo: func(form string) string { return form }},
			{Status: http.StatusForbidden, ContentType: "text/html", Echo: func(form string) string { return "<p>" + html.EscapeString(form) + "</p>" }},
		}
		for _, echo := range echoes {
			acme.fake.Enqueue(echo)
			cli.MustFail(t, "read", "mirakl/token")
			cli.MustRun(t, "write", "mirakl/config", "verify=false") // ends the refusal hold
		}
		cli.MustRun(t, "read", "mirakl/status")
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
