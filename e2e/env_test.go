//go:build e2e

// Package e2e drives the plugin inside real Vault processes (server, CLI,
// Agent) on loopback, against the fake Mirakl token endpoint. Run it with
// `make test-e2e`.
package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/fakemirakl"
	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/vaulttest"
)

// Every client secret and access token of the suite carries one of these
// markers, so that the leak check also catches a partial or truncated copy.
const (
	secretMarker = "e2eSECRET"
	tokenMarker  = "e2eTOKEN"
)

// repoRoot is where the examples live, relative to this package.
const repoRoot = ".."

// testEnv is one Vault server with the plugin, an audit device, and the fake
// Mirakl accounts it talks to. At the end of the test it checks that no
// client secret or access token appears where it must not.
type testEnv struct {
	t        *testing.T
	bins     vaulttest.Env
	vault    *vaulttest.Server
	dir      string
	audit    string // audit log path
	accounts []*account
	extraLog []string // more logs to check for leaks (agents)
	secrets  []string // more values that must not leak (wrong secrets tried)
}

// account is one Mirakl integration: its credentials and the fake that accepts them.
type account struct {
	name         string
	clientID     string
	clientSecret string
	fake         *fakemirakl.Server
}

// newEnv starts a dev server with a file audit device. The plugin is in its
// plugin directory but not yet registered.
func newEnv(t *testing.T) *testEnv {
	return newEnvWith(t, vaulttest.Options{})
}

// newEnvWith starts a server with opts; a non-dev server is initialised and unsealed.
func newEnvWith(t *testing.T, opts vaulttest.Options) *testEnv {
	t.Helper()
	e := &testEnv{t: t, bins: vaulttest.RequireEnv(t), dir: t.TempDir()}
	e.audit = filepath.Join(e.dir, "audit.log")
	opts.Dir = filepath.Join(e.dir, "vault")
	// Registered before the server starts, so it runs after the server
	// stopped and flushed its logs.
	t.Cleanup(e.checkNoLeak)
	e.vault = vaulttest.Start(t, e.bins, opts)
	if opts.Storage != vaulttest.StorageDev {
		e.vault.Init(t)
	}
	e.root().MustRun(t, "audit", "enable", "file", "file_path="+e.audit)
	return e
}

func (e *testEnv) root() *vaulttest.CLI { return e.vault.CLI() }

// newAccount starts a fake Mirakl endpoint for a new integration with
// distinctive credentials and token prefix.
func (e *testEnv) newAccount(name string, opts ...fakemirakl.Option) *account {
	e.t.Helper()
	a := &account{
		name:         name,
		clientID:     "e2e-client-" + name,
		clientSecret: secretMarker + "-" + name + "-" + randomHex(),
	}
	opts = append([]fakemirakl.Option{fakemirakl.WithTokenPrefix(tokenMarker + "-" + name + "-")}, opts...)
	a.fake = fakemirakl.New(a.clientID, a.clientSecret, opts...)
	e.t.Cleanup(a.fake.Close)
	e.accounts = append(e.accounts, a)
	return a
}

// mount registers the plugin (once) and enables it at path, as the README does.
func (e *testEnv) mount(path string) {
	e.t.Helper()
	if !e.registered() {
		e.vault.RegisterPlugin(e.t)
	}
	e.vault.EnablePlugin(e.t, path)
}

func (e *testEnv) registered() bool {
	p := e.vault.Plugin()
	r := e.root().Run(e.t, "plugin", "info", "-version="+p.Version, "secret", p.Name)
	return r.ExitCode == 0
}

// configure writes mount/config with the account's credentials.
func (e *testEnv) configure(mount string, a *account, extra ...string) {
	e.t.Helper()
	args := append([]string{"write", mount + "/config",
		"client_id=" + a.clientID,
		"client_secret=" + a.clientSecret,
		"token_url=" + a.fake.TokenURL(),
	}, extra...)
	e.root().MustRun(e.t, args...)
}

// leasedToken is `vault read -format=json <mount>/token`.
type leasedToken struct {
	LeaseID       string         `json:"lease_id"`
	LeaseDuration int            `json:"lease_duration"`
	Renewable     bool           `json:"renewable"`
	Data          map[string]any `json:"data"`
	Warnings      []string       `json:"warnings"`
}

func (l *leasedToken) accessToken() string {
	s, _ := l.Data["access_token"].(string)
	return s
}

// readToken reads mount/token with the CLI and fails the test if it cannot.
func readToken(t *testing.T, cli *vaulttest.CLI, mount string) *leasedToken {
	t.Helper()
	var l leasedToken
	cli.MustRunJSON(t, &l, "read", "-format=json", mount+"/token")
	if l.accessToken() == "" {
		t.Fatalf("vault read %s/token: no access_token in %+v", mount, l)
	}
	return &l
}

// issuedBy fails the test unless the fake of account a issued token.
func issuedBy(t *testing.T, a *account, token string) {
	t.Helper()
	if !slices.Contains(a.fake.IssuedTokens(), token) {
		t.Fatalf("token %q was not issued by the %s account's fake", token, a.name)
	}
}

// waitLeaseGone waits until `vault lease lookup` no longer finds the lease:
// `vault lease revoke` only queues the revocation.
func (e *testEnv) waitLeaseGone(leaseID string) {
	e.t.Helper()
	eventually(e.t, 30*time.Second, "lease "+leaseID+" to be revoked", func() bool {
		return e.root().Run(e.t, "lease", "lookup", leaseID).ExitCode != 0
	})
}

// denied fails the test unless r is a permission error (HTTP 403).
func denied(t *testing.T, r *vaulttest.Result) {
	t.Helper()
	out := r.Output()
	if r.ExitCode == 0 || !strings.Contains(out, "403") || !strings.Contains(out, "permission denied") {
		t.Fatalf("vault %s: want 403 permission denied, got exit %d:\n%s", strings.Join(r.Args, " "), r.ExitCode, out)
	}
}

// checkNoLeak looks for every client secret and every access token issued
// in the audit log, the server log, extra logs and every CLI output except
// the token reads themselves.
func (e *testEnv) checkNoLeak() {
	t := e.t
	if e.vault == nil {
		return
	}
	needles := append([]string{secretMarker, tokenMarker}, e.secrets...)
	for _, a := range e.accounts {
		needles = append(needles, a.clientSecret)
		needles = append(needles, a.fake.IssuedTokens()...)
	}

	type haystack struct{ where, text string }
	var stacks []haystack
	for _, path := range append([]string{e.audit, e.vault.LogPath}, e.extraLog...) {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Errorf("leak check: %v", err)
			continue
		}
		if len(data) == 0 {
			t.Errorf("leak check: %s is empty, so the check would prove nothing", path)
		}
		stacks = append(stacks, haystack{path, string(data)})
	}
	for _, r := range e.vault.Transcript() {
		if isTokenRead(r.Args) && r.ExitCode == 0 {
			continue // its output is the token; a failed read must not show one
		}
		stacks = append(stacks, haystack{"the output of vault " + strings.Join(r.Args, " "), r.Output()})
	}
	for _, s := range stacks {
		for _, n := range needles {
			if i := strings.Index(s.text, n); i >= 0 {
				t.Errorf("leak: %s contains %q: ...%s...", s.where, n, excerpt(s.text, i))
			}
		}
	}
}

// isTokenRead: `vault read [flags] <mount>/token [k=v...]`, whose output is the token.
func isTokenRead(args []string) bool {
	if len(args) == 0 || args[0] != "read" {
		return false
	}
	for _, a := range args[1:] {
		if !strings.HasPrefix(a, "-") {
			return strings.HasSuffix(a, "/token")
		}
	}
	return false
}

func excerpt(s string, i int) string {
	from, to := max(i-80, 0), min(i+80, len(s))
	return s[from:to]
}

// eventually polls cond every 200ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// readExample returns a file under examples/, failing the test if it is missing.
func readExample(t *testing.T, rel string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, "examples", rel))
	if err != nil {
		t.Fatalf("reading the example the README shows: %v", err)
	}
	return string(data)
}

// replaceAll replaces each old with its new in s, failing the test if an old
// is missing, so that an edited example cannot silently escape the test.
func replaceAll(t *testing.T, s string, oldNew ...string) string {
	t.Helper()
	for i := 0; i+1 < len(oldNew); i += 2 {
		if !strings.Contains(s, oldNew[i]) {
			t.Fatalf("the example no longer contains %q", oldNew[i])
		}
		s = strings.ReplaceAll(s, oldNew[i], oldNew[i+1])
	}
	return s
}

func writeFile(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func randomHex() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
