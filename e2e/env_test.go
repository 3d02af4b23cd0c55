//go:build e2e

// Package e2e drives the plugin inside real Vault processes (server, CLI,
// Agent, Proxy) on loopback, against the fake Mirakl token endpoint; the
// tests that forEachServer runs, in OpenBao too. Run it with `make test-e2e`.
package e2e

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
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

// forEachServer runs body as a parallel subtest per server, named after it:
// "vault", then "openbao". The OpenBao subtest skips, saying how to run it,
// on a machine without bao (no BAO_BIN, no bao on PATH); it fails instead
// when BAO_BIN is not an executable or MIRAKL_REQUIRE_OPENBAO=1 (CI).
//
//	func TestLeases(t *testing.T) { forEachServer(t, testLeases) }
//
//	func testLeases(t *testing.T, server vaulttest.Kind) {
//		e := newEnvFor(t, server, vaulttest.Options{})
//		...
func forEachServer(t *testing.T, body func(t *testing.T, server vaulttest.Kind)) {
	t.Helper()
	t.Parallel()
	for _, server := range vaulttest.Kinds() {
		t.Run(server.String(), func(t *testing.T) {
			t.Parallel()
			if server == vaulttest.OpenBao && !vaulttest.OpenBaoAvailable(t) {
				t.Skip(vaulttest.HowToRunOpenBao)
			}
			body(t, server)
		})
	}
}

// testEnv is one Vault or OpenBao server, or a cluster of them, with the
// plugin, an audit device, and the fake Mirakl accounts it talks to. At the
// end of the test it checks that every process stopped and that no client
// secret or access token appears where it must not.
type testEnv struct {
	t        *testing.T
	bins     vaulttest.Env
	vault    *vaulttest.Server  // the single server; nil in a cluster's env
	cluster  *vaulttest.Cluster // nil in a single server's env
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

// newEnv starts a Vault dev server with a file audit device. The plugin is
// in its plugin directory but not yet registered.
func newEnv(t *testing.T) *testEnv {
	return newEnvFor(t, vaulttest.Vault, vaulttest.Options{})
}

// newEnvFor starts a server of the given kind with opts and a file audit
// device; a non-dev server is initialised and unsealed. The plugin is in its
// plugin directory but not yet registered.
func newEnvFor(t *testing.T, server vaulttest.Kind, opts vaulttest.Options) *testEnv {
	t.Helper()
	e := prepareEnv(t, server)
	opts.Dir = filepath.Join(e.dir, "vault")
	opts.AuditLog = e.audit
	e.vault = vaulttest.Start(t, e.bins, opts)
	if opts.Storage != vaulttest.StorageDev {
		e.vault.Init(t)
	}
	e.requireAudit(e.vault)
	return e
}

// newClusterEnvFor starts an n-node cluster of the given kind with a file
// audit device. The plugin is in the nodes' shared plugin directory but not
// yet registered.
func newClusterEnvFor(t *testing.T, server vaulttest.Kind, n int) *testEnv {
	t.Helper()
	e := prepareEnv(t, server)
	e.cluster = vaulttest.StartCluster(t, e.bins, n, vaulttest.ClusterOptions{AuditLog: e.audit})
	e.requireAudit(e.cluster.Leader(t))
	return e
}

// prepareEnv is an env without servers. Its checks are registered before any
// server starts, so that they run after every server stopped and flushed its
// logs.
func prepareEnv(t *testing.T, server vaulttest.Kind) *testEnv {
	t.Helper()
	e := &testEnv{t: t, bins: vaulttest.RequireEnvFor(t, server), dir: t.TempDir()}
	e.audit = filepath.Join(e.dir, "audit.log")
	t.Cleanup(e.checkFakesSawOnlyGoodRequests)
	t.Cleanup(e.checkStopped)
	t.Cleanup(e.checkNoLeak)
	return e
}

// requireAudit fails the test unless s lists the file audit device that
// writes the env's audit log: the leak check reads that log, and proves
// nothing if no device writes it (Vault enables it through the API, OpenBao
// from its config file).
func (e *testEnv) requireAudit(s *vaulttest.Server) {
	e.t.Helper()
	var devices map[string]struct {
		Type    string            `json:"type"`
		Options map[string]string `json:"options"`
	}
	s.CLI().MustRunJSON(e.t, &devices, "audit", "list", "-format=json")
	if d := devices["file/"]; d.Type != "file" || d.Options["file_path"] != e.audit {
		e.t.Fatalf("%s audit list: %v, want a file device at file/ writing %s", e.bins.Kind.Command(), devices, e.audit)
	}
}

// servers are the single server or the cluster's nodes, whichever started.
func (e *testEnv) servers() []*vaulttest.Server {
	switch {
	case e.cluster != nil:
		return e.cluster.Nodes
	case e.vault != nil:
		return []*vaulttest.Server{e.vault}
	}
	return nil
}

func (e *testEnv) root() *vaulttest.CLI { return e.vault.CLI() }

// newAccount starts a fake Mirakl endpoint for a new integration with
// distinctive credentials and token prefix.
func (e *testEnv) newAccount(name string, opts ...fakemirakl.Option) *account {
	e.t.Helper()
	a := &account{
		name:     name,
		clientID: "e2e-client-" + name,
		// Characters that a form, a URL, JSON and HTML all encode, so that
		// an echo in any of them would still show the marker.
		clientSecret: secretMarker + "-" + name + `+/=&%"<>` + randomHex(),
	}
	opts = append([]fakemirakl.Option{fakemirakl.WithTokenPrefix(tokenMarker + "-" + name + "-")}, opts...)
	a.fake = fakemirakl.New(a.clientID, a.clientSecret, opts...)
	e.t.Cleanup(a.fake.Close)
	e.accounts = append(e.accounts, a)
	return a
}

// readerTokenFile makes a directory named name under the env's, holding a
// file with a new Vault token of the README's reader policy: what the
// token_file auto-auth of an Agent or a Proxy reads.
func (e *testEnv) readerTokenFile(name string) (dir, tokenFile string) {
	e.t.Helper()
	return e.policyTokenFile(name, "mirakl-reader", filepath.Join(repoRoot, "examples/policies/mirakl-reader.hcl"))
}

// policyTokenFile is readerTokenFile for the policy in policyFile, written
// under the name policy.
func (e *testEnv) policyTokenFile(name, policy, policyFile string) (dir, tokenFile string) {
	e.t.Helper()
	dir = filepath.Join(e.dir, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		e.t.Fatal(err)
	}
	root := e.root()
	root.MustRun(e.t, "policy", "write", policy, policyFile)
	token := strings.TrimSpace(root.MustRun(e.t, "token", "create", "-policy="+policy, "-field=token"))
	return dir, writeFile(e.t, filepath.Join(dir, "vault-token"), token)
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

// checkConfig reads mount/config with cli and fails the test unless it names
// a's client and token endpoint and hides the client secret; when says at
// which point of the test. It returns the config for further checks.
func checkConfig(t *testing.T, cli *vaulttest.CLI, mount string, a *account, when string) map[string]any {
	t.Helper()
	var read struct {
		Data map[string]any `json:"data"`
	}
	cli.MustRunJSON(t, &read, "read", "-format=json", mount+"/config")
	cfg := read.Data
	if cfg["client_id"] != a.clientID || cfg["token_url"] != a.fake.TokenURL() {
		t.Errorf("vault read %s/config %s: %v, want client_id %s and token_url %s", mount, when, cfg, a.clientID, a.fake.TokenURL())
	}
	if _, ok := cfg["client_secret"]; ok {
		t.Errorf("vault read %s/config %s returns client_secret: %v", mount, when, cfg)
	}
	return cfg
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
	return readTokenAt(t, cli, mount+"/token")
}

// readRoleToken reads mount/token/role with the CLI and fails the test if it cannot.
func readRoleToken(t *testing.T, cli *vaulttest.CLI, mount, role string) *leasedToken {
	t.Helper()
	return readTokenAt(t, cli, mount+"/token/"+role)
}

func readTokenAt(t *testing.T, cli *vaulttest.CLI, path string) *leasedToken {
	t.Helper()
	var l leasedToken
	cli.MustRunJSON(t, &l, "read", "-format=json", path)
	if l.accessToken() == "" {
		t.Fatalf("vault read %s: no access_token in %+v", path, l)
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

// checkStopped checks, once the harness has stopped everything, that no
// server and no process out of a plugin directory is left.
func (e *testEnv) checkStopped() {
	t := e.t
	pluginDirs := map[string]bool{} // a cluster's nodes share theirs
	for _, s := range e.servers() {
		if p := s.Process(); p != nil && !p.Exited() {
			t.Errorf("%s (pid %d) still runs after the test", s.Opts.Name, p.PID())
		}
		pluginDirs[s.PluginDir] = true
	}
	for dir := range pluginDirs {
		// Killed with their server's process group, plugins may take a moment
		// to be gone from the process list.
		deadline := time.Now().Add(5 * time.Second)
		pids, err := vaulttest.ProcessesIn(dir)
		for err == nil && len(pids) > 0 && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
			pids, err = vaulttest.ProcessesIn(dir)
		}
		switch {
		case err != nil:
			t.Errorf("checking for plugin processes: %v", err)
		case len(pids) > 0:
			t.Errorf("plugin processes %v out of %s still run after the test", pids, dir)
		}
	}
}

// checkFakesSawOnlyGoodRequests fails the test if a fake Mirakl saw a
// request that Mirakl would refuse as malformed (a wrong method, Content-Type
// or Accept, a form field missing, doubled or extra, credentials outside the
// body): the fake answers those 400, but a test must not pass by a retry or
// a cached token past one. It runs once every server has stopped.
func (e *testEnv) checkFakesSawOnlyGoodRequests() {
	for _, a := range e.accounts {
		if v := a.fake.Violations(); len(v) > 0 {
			e.t.Errorf("the %s account's fake Mirakl saw requests that Mirakl would refuse:\n%s", a.name, strings.Join(v, "\n"))
		}
	}
}

// checkNoLeak looks for every client secret and every access token issued
// in the audit log, the server logs, extra logs and every CLI output except
// the token reads themselves.
func (e *testEnv) checkNoLeak() {
	t := e.t
	servers := e.servers()
	if len(servers) == 0 {
		return
	}
	needles := append([]string{secretMarker, tokenMarker}, e.secrets...)
	for _, a := range e.accounts {
		needles = append(needles, a.clientSecret, base64.StdEncoding.EncodeToString([]byte(a.clientSecret)))
		needles = append(needles, a.fake.IssuedTokens()...)
	}

	type haystack struct{ where, text string }
	var stacks []haystack
	paths := append([]string{e.audit}, e.extraLog...)
	for _, s := range servers {
		paths = append(paths, s.LogPath)
	}
	for _, path := range paths {
		data, err := os.ReadFile(path)
		switch {
		case err != nil && t.Failed():
			continue // a test that stopped early may not have enabled the audit device
		case err != nil:
			t.Errorf("leak check: %v", err)
			continue
		case len(data) == 0:
			t.Errorf("leak check: %s is empty, so the check would prove nothing", path)
		}
		stacks = append(stacks, haystack{path, string(data)})
	}
	for _, s := range servers {
		for _, r := range s.Transcript() {
			if isTokenRead(r.Args) && r.ExitCode == 0 {
				continue // its output is the token; a failed read must not show one
			}
			stacks = append(stacks, haystack{"the output of " + e.bins.Kind.Command() + " " + strings.Join(r.Args, " ") + " on " + s.Opts.Name, r.Output()})
		}
	}
	for _, s := range stacks {
		for _, n := range needles {
			if i := strings.Index(s.text, n); i >= 0 {
				t.Errorf("leak: %s contains %q: ...%s...", s.where, n, excerpt(s.text, i))
			}
		}
	}
}

// isTokenRead: `vault read [flags] <mount>/token [k=v...]` or a role's
// `<mount>/token/<name>`, whose output is the token.
func isTokenRead(args []string) bool {
	if len(args) == 0 || args[0] != "read" {
		return false
	}
	for _, a := range args[1:] {
		if !strings.HasPrefix(a, "-") {
			parts := strings.Split(a, "/")
			n := len(parts)
			return (n >= 2 && parts[n-1] == "token") || (n >= 3 && parts[n-2] == "token")
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

// waitGroup waits for wg, failing the test after timeout.
func waitGroup(t *testing.T, timeout time.Duration, what string, wg *sync.WaitGroup) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(timeout):
		t.Fatalf("timed out after %s waiting for %s", timeout, what)
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
