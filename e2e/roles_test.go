//go:build e2e

package e2e

import (
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/fakemirakl"
	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/vaulttest"
)

// Roles (issue 25): one config, and a token per Mirakl Connect company at
// mirakl/token/<role>, each under a policy of its own. Every test here runs
// in Vault and in OpenBao.

// The companies' audiences: ids, as Mirakl Connect names its companies.
const (
	acmeAudience    = "3b0f6c2e-5a41-4d9e-9f7a-2c8d1e4b6a70"
	globexAudience  = "9d2e7f14-0c6b-4b3a-a5e8-71f4c2d9b0e6"
	initechAudience = "c41a8b3d-27e5-4f90-b6d1-0e9f5a7c2b48"
)

// numberedAudience is the audience of the i-th role of a test with many.
func numberedAudience(i int) string { return fmt.Sprintf("00000000-0000-4000-8000-%012d", i) }

// writeRole is `vault write <mount>/roles/<name> audience=<audience>`, with
// extra fields (verify=false, min_ttl=...).
func (e *testEnv) writeRole(mount, name, audience string, extra ...string) {
	e.t.Helper()
	e.root().MustRun(e.t, append([]string{"write", mount + "/roles/" + name, "audience=" + audience}, extra...)...)
}

// asPolicy is a CLI with a new Vault token of policy (and Vault's default policy).
func (e *testEnv) asPolicy(policy string) *vaulttest.CLI {
	e.t.Helper()
	token := strings.TrimSpace(e.root().MustRun(e.t, "token", "create", "-policy="+policy, "-field=token"))
	return e.vault.CLIWithToken(token)
}

// forAudience fails the test unless a's fake issued token, for audience.
func forAudience(t *testing.T, a *account, token, audience string) {
	t.Helper()
	got, ok := a.fake.AudienceOf(token)
	switch {
	case !ok:
		t.Fatalf("token %q was not issued by the %s account's fake", token, a.name)
	case got != audience:
		t.Fatalf("a token for audience %q where one for %q was wanted", got, audience)
	}
}

// roleStatus is `vault read -format=json <mount>/status/<role>`.
func roleStatus(t *testing.T, cli *vaulttest.CLI, mount, role string) map[string]any {
	t.Helper()
	var status struct {
		Data map[string]any `json:"data"`
	}
	cli.MustRunJSON(t, &status, "read", "-format=json", mount+"/status/"+role)
	return status.Data
}

// examples/policies/mirakl-role-reader.hcl, loaded as it is: a team with the
// policy of the role acme reads acme's tokens, renews their leases, and is
// refused every other role's token, the default token, the roles and the
// config. The same file with the role's name replaced serves another team.
func TestRolesPolicies(t *testing.T) { forEachServer(t, testRolesPolicies) }

func testRolesPolicies(t *testing.T, server vaulttest.Kind) {
	e := newEnvFor(t, server, vaulttest.Options{})
	a := e.newAccount("roles", fakemirakl.WithAudiences("", acmeAudience, globexAudience))
	e.mount("mirakl")
	e.configure("mirakl", a)
	e.writeRole("mirakl", "acme", acmeAudience)
	e.writeRole("mirakl", "globex", globexAudience)

	root := e.root()
	root.MustRun(t, "policy", "write", "mirakl-acme", filepath.Join(repoRoot, "examples/policies/mirakl-role-reader.hcl"))
	root.MustRun(t, "policy", "write", "mirakl-globex", writeFile(t, filepath.Join(e.dir, "globex.hcl"),
		replaceAll(t, readExample(t, "policies/mirakl-role-reader.hcl"), `"mirakl/token/acme"`, `"mirakl/token/globex"`)))
	acme, globex := e.asPolicy("mirakl-acme"), e.asPolicy("mirakl-globex")

	t.Run("each team reads its company's tokens and renews their leases", func(t *testing.T) {
		for _, c := range []struct {
			cli            *vaulttest.CLI
			role, audience string
		}{{acme, "acme", acmeAudience}, {globex, "globex", globexAudience}} {
			l := readRoleToken(t, c.cli, "mirakl", c.role)
			forAudience(t, a, l.accessToken(), c.audience)
			if !l.Renewable || l.LeaseDuration <= 0 {
				t.Errorf("vault read mirakl/token/%s: lease %ds renewable %v, want a renewable lease", c.role, l.LeaseDuration, l.Renewable)
			}
			c.cli.MustRun(t, "lease", "renew", l.LeaseID)
		}
	})

	t.Run("a team is refused the other tokens", func(t *testing.T) {
		denied(t, acme.Run(t, "read", "mirakl/token/globex"))
		denied(t, globex.Run(t, "read", "mirakl/token/acme"))
		denied(t, acme.Run(t, "read", "mirakl/token"))
		// The exact path: no role whose name starts with acme's.
		denied(t, acme.Run(t, "read", "mirakl/token/acme-eu"))
	})

	t.Run("a team is refused the roles", func(t *testing.T) {
		denied(t, acme.Run(t, "list", "mirakl/roles"))
		denied(t, acme.Run(t, "read", "mirakl/roles/acme"))
		denied(t, acme.Run(t, "read", "mirakl/roles/globex"))
		// Pointing its own role at another company would hand it that
		// company's tokens.
		denied(t, acme.Run(t, "write", "mirakl/roles/acme", "audience="+globexAudience))
		denied(t, acme.Run(t, "write", "mirakl/roles/acme-eu", "audience="+globexAudience))
		denied(t, acme.Run(t, "delete", "mirakl/roles/globex"))
		denied(t, acme.Run(t, "read", "mirakl/status/acme"))
	})

	t.Run("a team is refused the config", func(t *testing.T) {
		denied(t, acme.Run(t, "read", "mirakl/config"))
		denied(t, acme.Run(t, "write", "mirakl/config", "audience="+globexAudience))
		denied(t, acme.Run(t, "delete", "mirakl/config"))
		denied(t, acme.Run(t, "lease", "revoke", "-prefix", "mirakl/token"))
	})

	t.Run("the roles are as the admin wrote them", func(t *testing.T) {
		var list []string
		root.MustRunJSON(t, &list, "list", "-format=json", "mirakl/roles")
		if !slices.Equal(list, []string{"acme", "globex"}) {
			t.Errorf("vault list mirakl/roles: %v, want [acme globex]", list)
		}
		var role struct {
			Data map[string]any `json:"data"`
		}
		root.MustRunJSON(t, &role, "read", "-format=json", "mirakl/roles/acme")
		if role.Data["audience"] != acmeAudience {
			t.Errorf("vault read mirakl/roles/acme: %v, want audience %s", role.Data, acmeAudience)
		}
	})
}

// Vault Agent with the README's agent.hcl and the role's template
// (examples/agent/mirakl-role-token.tpl), authenticated with the role's
// reader policy, keeps acme's current token on disk: with tokens that live
// 30s it renders a new one before the old expires, each for acme's company.
func TestRolesAgent(t *testing.T) { forEachServer(t, testRolesAgent) }

func testRolesAgent(t *testing.T, server vaulttest.Kind) {
	const expiresIn = 30 * time.Second
	e := newEnvFor(t, server, vaulttest.Options{})
	a := e.newAccount("roles", fakemirakl.WithExpiresIn(int(expiresIn.Seconds())),
		fakemirakl.WithAudiences("", acmeAudience, globexAudience))
	e.mount("mirakl")
	e.configure("mirakl", a)
	e.writeRole("mirakl", "acme", acmeAudience)
	e.writeRole("mirakl", "globex", globexAudience)

	dir, tokenFile := e.policyTokenFile("agent", "mirakl-acme", filepath.Join(repoRoot, "examples/policies/mirakl-role-reader.hcl"))
	template := writeFile(t, filepath.Join(dir, "mirakl-role-token.tpl"), readExample(t, "agent/mirakl-role-token.tpl"))
	rendered := filepath.Join(dir, "mirakl-token")
	config := writeFile(t, filepath.Join(dir, "agent.hcl"), replaceAll(t, readExample(t, "agent/agent.hcl"),
		"https://vault.example.com:8200", e.vault.Addr,
		"/etc/vault-agent/vault-token", tokenFile,
		"/etc/vault-agent/mirakl-token.tpl", template,
		"/run/secrets/mirakl-token", rendered,
	))
	agent := vaulttest.StartAgent(t, e.bins, config)
	e.extraLog = append(e.extraLog, agent.LogPath)
	for _, token := range rendersFreshTokens(t, a, rendered, expiresIn) {
		forAudience(t, a, token, acmeAudience)
	}
	if agent.Exited() {
		t.Errorf("the agent exited: %v", agent.ExitError())
	}
}

// Vault Proxy with the README's proxy.hcl, authenticated with a role's
// reader policy: an application that reads mirakl/token/acme on every call
// gets acme's token under one lease, and is refused globex's.
func TestRolesProxy(t *testing.T) { forEachServer(t, testRolesProxy) }

func testRolesProxy(t *testing.T, server vaulttest.Kind) {
	const reads = 20
	e := newEnvFor(t, server, vaulttest.Options{})
	a := e.newAccount("roles", fakemirakl.WithAudiences("", acmeAudience, globexAudience))
	e.mount("mirakl")
	e.configure("mirakl", a)
	e.writeRole("mirakl", "acme", acmeAudience)
	e.writeRole("mirakl", "globex", globexAudience)

	dir, tokenFile := e.policyTokenFile("proxy", "mirakl-acme", filepath.Join(repoRoot, "examples/policies/mirakl-role-reader.hcl"))
	proxyAddr := fmt.Sprintf("127.0.0.1:%d", vaulttest.FreePort(t))
	config := writeFile(t, filepath.Join(dir, "proxy.hcl"), replaceAll(t, readExample(t, "proxy/proxy.hcl"),
		"https://vault.example.com:8200", e.vault.Addr,
		"/etc/vault-proxy/vault-token", tokenFile,
		"127.0.0.1:8100", proxyAddr,
	))
	proxy := vaulttest.StartProxy(t, e.bins, config)
	e.extraLog = append(e.extraLog, proxy.LogPath)

	app, err := api.NewClient(&api.Config{Address: "http://" + proxyAddr, Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	app.SetToken("")
	eventually(t, 30*time.Second, "the proxy to answer", func() bool {
		_, err := app.Logical().Read("mirakl/token/acme")
		return err == nil
	})
	leases := map[string]bool{}
	for range reads {
		secret, err := app.Logical().Read("mirakl/token/acme")
		if err != nil {
			t.Fatalf("a read of mirakl/token/acme through the proxy failed: %v", err)
		}
		token, _ := secret.Data["access_token"].(string)
		forAudience(t, a, token, acmeAudience)
		leases[secret.LeaseID] = true
	}
	if len(leases) != 1 {
		t.Errorf("%d reads of mirakl/token/acme through the proxy made %d leases, want 1", reads, len(leases))
	}
	_, err = app.Logical().Read("mirakl/token/globex")
	var resp *api.ResponseError
	if !errors.As(err, &resp) || resp.StatusCode != http.StatusForbidden {
		t.Errorf("a read of mirakl/token/globex through acme's proxy: %v, want 403", errorText(err))
	}
	if proxy.Exited() {
		t.Errorf("the proxy exited: %v", proxy.ExitError())
	}
}

// A real server (file storage) restarted, and the plugin reloaded, while
// Mirakl fails every request: every role's read serves the token it had
// before, restored from storage, and Mirakl sees no request.
func TestRolesRestartWithMiraklDown(t *testing.T) { forEachServer(t, testRolesRestartWithMiraklDown) }

func testRolesRestartWithMiraklDown(t *testing.T, server vaulttest.Kind) {
	audiences := map[string]string{"acme": acmeAudience, "globex": globexAudience, "initech": initechAudience}
	roles := []string{"acme", "globex", "initech"}
	e := newEnvFor(t, server, vaulttest.Options{Storage: vaulttest.StorageFile})
	a := e.newAccount("roles", fakemirakl.WithAudiences("", acmeAudience, globexAudience, initechAudience))
	e.mount("mirakl")
	e.configure("mirakl", a)
	cli := e.root()
	before := map[string]*leasedToken{}
	for _, role := range roles {
		e.writeRole("mirakl", role, audiences[role])
		before[role] = readRoleToken(t, cli, "mirakl", role)
		forAudience(t, a, before[role].accessToken(), audiences[role])
	}
	defaultBefore := readToken(t, cli, "mirakl")
	forAudience(t, a, defaultBefore.accessToken(), "")

	// Mirakl is down from now on: any request would fail the reads below.
	a.fake.FailRandomly(1, fakemirakl.HTMLError(http.StatusServiceUnavailable))
	requests := a.fake.Requests()
	sameTokens := func(t *testing.T, after string) {
		t.Helper()
		for _, role := range roles {
			if got := readRoleToken(t, cli, "mirakl", role).accessToken(); got != before[role].accessToken() {
				t.Errorf("after %s: mirakl/token/%s is not the token from before", after, role)
			}
		}
		if got := readToken(t, cli, "mirakl").accessToken(); got != defaultBefore.accessToken() {
			t.Errorf("after %s: mirakl/token is not the token from before", after)
		}
		if n := a.fake.Requests() - requests; n != 0 {
			t.Errorf("after %s: %d requests to Mirakl, want none", after, n)
		}
	}

	t.Run("vault restart", func(t *testing.T) {
		e.vault.Restart(t)
		e.vault.WaitActive(t)
		sameTokens(t, "a restart")
		for _, role := range roles {
			// The leases from before the restart are still known.
			cli.MustRun(t, "lease", "lookup", before[role].LeaseID)
			status := roleStatus(t, cli, "mirakl", role)
			if status["in_use"] != true || status["audience"] != audiences[role] || status["token_expires_at"] == nil {
				t.Errorf("vault read mirakl/status/%s after the restart: %v, want its audience and its token", role, status)
			}
		}
	})

	t.Run("vault plugin reload", func(t *testing.T) {
		cli.MustRun(t, "plugin", "reload", "-plugin=mirakl")
		sameTokens(t, "vault plugin reload")
	})
}

// The gate's schedule (gate.go), as issue 24 and 25 state it: after the n-th
// failure in a row no request of the mount goes out for a jittered wait of
// at least half of 5s doubled n-1 times, capped at a minute, whichever role
// wants one. Each attempt is one HTTP request, but the first of an outage
// (the last request had succeeded: it may be a blip), which retries within
// the request up to inRequestRetries more times.
const (
	gateFirstWait    = 5 * time.Second
	gateLastWait     = time.Minute
	inRequestRetries = 4
)

// gateBudget is the most requests the gate of one mount lets out in the
// first d of an outage.
func gateBudget(d time.Duration) int {
	n, elapsed := 1+inRequestRetries, time.Duration(0)
	for k := 0; ; k++ {
		if elapsed += min(gateFirstWait<<k, gateLastWait) / 2; elapsed > d {
			return n
		}
		n++
	}
}

// roleRead is what one read of a role's token got.
type roleRead struct {
	at    time.Time // when it was sent
	token string    // "" if it failed
	err   error
}

// Readers on 20 roles of one mount through an outage long enough for every
// role's token to expire: every read is served a valid token of its role's
// company or fails at once with the 502 that names the outage, and once
// Mirakl answers again every role is served again. Mirakl should see the
// gate's schedule for the mount however many roles want a token, not a
// request per role: see rolesOutage.
func TestRolesOutage(t *testing.T) {
	forEachServer(t, func(t *testing.T, server vaulttest.Kind) {
		// Mirakl answers 503 at once. request_timeout leaves room for the
		// first attempt's in-request retries (at most 3.75s of waits).
		rolesOutage(t, server, 5*time.Second, func() (fakemirakl.Fault, func()) {
			return fakemirakl.HTMLError(http.StatusServiceUnavailable), func() {}
		})
	})
}

// The same with a Mirakl that does not answer at all (each request hangs
// until the engine gives up at request_timeout).
func TestRolesOutageNoAnswer(t *testing.T) {
	forEachServer(t, func(t *testing.T, server vaulttest.Kind) {
		rolesOutage(t, server, 3*time.Second, func() (fakemirakl.Fault, func()) {
			release := make(chan struct{})
			return fakemirakl.Hang(release), func() { close(release) }
		})
	})
}

// rolesOutage runs the outage tests: readers on 20 roles, Mirakl failing
// every request with the fault that outage returns until its end function
// is called, for at least minOutage and until every role's reads fail.
func rolesOutage(t *testing.T, server vaulttest.Kind, requestTimeout time.Duration, outage func() (fault fakemirakl.Fault, end func())) {
	const (
		roles     = 20
		expiresIn = 8 // seconds: a token's successor is fetched at half its life
		minOutage = 30 * time.Second
		pause     = 200 * time.Millisecond // between one reader's reads
	)
	names := make([]string, roles)
	audiences := make([]string, roles)
	for i := range roles {
		names[i], audiences[i] = fmt.Sprintf("company-%02d", i), numberedAudience(i)
	}
	e := newEnvFor(t, server, vaulttest.Options{})
	a := e.newAccount("roles", fakemirakl.WithExpiresIn(expiresIn), fakemirakl.WithAudiences(append([]string{""}, audiences...)...))
	e.mount("mirakl")
	e.configure("mirakl", a, "min_ttl=0s", fmt.Sprintf("request_timeout=%ds", int(requestTimeout.Seconds())))
	for i, name := range names {
		e.writeRole("mirakl", name, audiences[i])
	}

	client := e.vault.Client(t)
	var mu sync.Mutex
	got := make([][]roleRead, roles)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				r := roleRead{at: time.Now()}
				var secret *api.Secret
				if secret, r.err = client.Logical().Read("mirakl/token/" + name); r.err == nil {
					r.token, _ = secret.Data["access_token"].(string)
				}
				mu.Lock()
				got[i] = append(got[i], r)
				mu.Unlock()
				time.Sleep(pause)
			}
		})
	}
	stopped := false
	stopReaders := func() {
		if !stopped {
			stopped = true
			close(stop)
			waitGroup(t, 2*time.Minute, "the readers to stop", &wg)
		}
	}
	t.Cleanup(stopReaders)
	// everyRole holds when each role has a read sent since from that cond accepts.
	everyRole := func(from time.Time, cond func(roleRead) bool) bool {
		mu.Lock()
		defer mu.Unlock()
		for i := range roles {
			if !slices.ContainsFunc(got[i], func(r roleRead) bool { return !r.at.Before(from) && cond(r) }) {
				return false
			}
		}
		return true
	}
	served := func(r roleRead) bool { return r.err == nil }
	failed := func(r roleRead) bool { return r.err != nil }
	eventually(t, time.Minute, "every role to be served", func() bool { return everyRole(time.Time{}, served) })

	fault, endOutage := outage()
	start := time.Now()
	a.fake.FailRandomly(1, fault)
	// Until every role's token has expired and its reads fail: then each
	// role wants a new token.
	eventually(t, 3*time.Minute, "a failed read of every role", func() bool { return everyRole(start, failed) })
	if left := minOutage - time.Since(start); left > 0 {
		time.Sleep(left)
	}
	var status struct {
		Data map[string]any `json:"data"`
	}
	e.root().MustRunJSON(t, &status, "read", "-format=json", "mirakl/status")
	end := time.Now()
	a.fake.FailRandomly(0, fakemirakl.Fault{})
	endOutage()

	// Once Mirakl answers, the gate's next attempt brings a token, and
	// every role's next request after it too.
	eventually(t, gateLastWait+requestTimeout+time.Minute, "every role to be served after the outage", func() bool {
		return everyRole(end, func(r roleRead) bool {
			issued, ok := a.fake.IssuedAt(r.token)
			return served(r) && ok && issued.After(end)
		})
	})
	stopReaders()

	reads, failures := 0, 0
	unexpected := map[string]int{} // error text -> reads that got it
	for i := range roles {
		for _, r := range got[i] {
			if r.at.Before(start) || !r.at.Before(end) {
				continue
			}
			reads++
			if r.err == nil {
				forAudience(t, a, r.token, audiences[i])
				if issued, _ := a.fake.IssuedAt(r.token); !r.at.Before(issued.Add(expiresIn * time.Second)) {
					t.Errorf("mirakl/token/%s handed out a token %s after it expired", names[i], r.at.Sub(issued.Add(expiresIn*time.Second)))
				}
				continue
			}
			failures++
			var resp *api.ResponseError
			if !errors.As(r.err, &resp) || resp.StatusCode != http.StatusBadGateway || !strings.Contains(r.err.Error(), "* Mirakl token endpoint unavailable: ") {
				unexpected[strings.Join(strings.Fields(r.err.Error()), " ")]++
			}
		}
	}
	for text, n := range unexpected {
		t.Errorf("%d reads during the outage failed otherwise than with the 502 of an unavailable Mirakl: %s", n, text)
	}
	if active := status.Data["roles_active"]; active != float64(roles) {
		t.Errorf("mirakl/status during the outage: roles_active %v, want %d", active, roles)
	}
	if shown, _ := status.Data["roles"].(map[string]any); len(shown) != roles {
		t.Errorf("mirakl/status during the outage lists %d roles, want %d", len(shown), roles)
	}

	// What Mirakl saw while it was down, by role.
	var during []string
	perRole := map[string]int{}
	for _, r := range a.fake.Seen() {
		if !r.Arrived.Before(start) && r.Arrived.Before(end) {
			during = append(during, fmt.Sprintf("%s %s", r.Arrived.Sub(start).Round(10*time.Millisecond), strings.TrimPrefix(r.Form.Get("audience"), "00000000-0000-4000-8000-")))
			perRole[r.Form.Get("audience")]++
		}
	}
	d := end.Sub(start)
	budget := gateBudget(d)
	if budget >= roles {
		t.Fatalf("the outage lasted %s: the gate's budget, %d, is no fewer than the %d roles, so the test cannot tell a gate per mount from one per role", d.Round(time.Second), budget, roles)
	}
	evidence := fmt.Sprintf("%d roles read through an outage of %s: %d reads, %d failed; Mirakl saw %d requests from %d roles (the gate's budget for the mount: %d); arrivals (offset, audience's last digits): %s",
		roles, d.Round(100*time.Millisecond), reads, failures, len(during), len(perRole), budget, strings.Join(during, ", "))
	t.Log(evidence)
	// At least no role's reads pass the gate: each role costs no more than
	// the gate's schedule.
	for audience, n := range perRole {
		if n > budget {
			t.Errorf("Mirakl saw %d requests for audience %s during the outage, more than the gate's budget of %d for the whole mount", n, audience, budget)
		}
	}
	t.Run("the mount's gate holds every role to its schedule", func(t *testing.T) {
		if len(during) > budget {
			t.Errorf("Mirakl saw %d requests during the outage, want at most %d (the gate's schedule for one mount)", len(during), budget)
		}
	})
}

// Mirakl refuses one company's audience (it withdrew its consent): that
// role's reads fail with a 502 naming the OAuth error and status says so,
// while another role goes on being served fresh tokens of its own audience;
// a new role for the refused audience is not stored; once the company
// consents again, an admin's write of the role brings it back at once.
func TestRolesRefusedAudience(t *testing.T) { forEachServer(t, testRolesRefusedAudience) }

func testRolesRefusedAudience(t *testing.T, server vaulttest.Kind) {
	const expiresIn = 6 // seconds
	e := newEnvFor(t, server, vaulttest.Options{})
	a := e.newAccount("roles", fakemirakl.WithExpiresIn(expiresIn), fakemirakl.WithAudiences("", acmeAudience, globexAudience))
	e.mount("mirakl")
	e.configure("mirakl", a, "min_ttl=0s")
	e.writeRole("mirakl", "acme", acmeAudience)
	e.writeRole("mirakl", "globex", globexAudience)
	root := e.root()
	forAudience(t, a, readRoleToken(t, root, "mirakl", "acme").accessToken(), acmeAudience)
	forAudience(t, a, readRoleToken(t, root, "mirakl", "globex").accessToken(), globexAudience)

	a.fake.RefuseAudience(globexAudience, "invalid_grant")
	refused := time.Now()
	client := e.vault.Client(t)

	t.Run("the refused role fails, the other is served", func(t *testing.T) {
		// globex's token expires, and no new one comes.
		var globexErr error
		eventually(t, 3*expiresIn*time.Second, "globex's reads to fail", func() bool {
			_, globexErr = client.Logical().Read("mirakl/token/globex")
			return globexErr != nil
		})
		var resp *api.ResponseError
		if !errors.As(globexErr, &resp) || resp.StatusCode != http.StatusBadGateway ||
			!strings.Contains(globexErr.Error(), `Mirakl refused the credentials: HTTP 400, error "invalid_grant"`) {
			t.Errorf("vault read mirakl/token/globex: %s, want a 502 naming invalid_grant", errorText(globexErr))
		}
		// acme goes on, over more than two of its tokens' lifetimes, with
		// new tokens for its own company.
		acmeTokens := map[string]bool{}
		deadline := time.Now().Add(3 * expiresIn * time.Second)
		for time.Now().Before(deadline) {
			l := readRoleToken(t, root, "mirakl", "acme")
			forAudience(t, a, l.accessToken(), acmeAudience)
			if issued, _ := a.fake.IssuedAt(l.accessToken()); issued.After(refused) {
				acmeTokens[l.accessToken()] = true
			}
			time.Sleep(500 * time.Millisecond)
		}
		if len(acmeTokens) < 2 {
			t.Errorf("acme was served %d tokens issued after globex's audience was refused, over 3 of their lifetimes; want at least 2", len(acmeTokens))
		}
	})

	t.Run("status shows the refusal on the refused role only", func(t *testing.T) {
		if s := roleStatus(t, root, "mirakl", "globex"); s["audience_refused"] != true {
			t.Errorf("vault read mirakl/status/globex: %v, want audience_refused true", s)
		}
		if s := roleStatus(t, root, "mirakl", "acme"); s["audience_refused"] != false || s["requests_held"] != false {
			t.Errorf("vault read mirakl/status/acme: %v, want audience_refused and requests_held false", s)
		}
		status, _, body := getMetrics(t, e.vault.Addr, e.vault.RootToken())
		if status != http.StatusOK {
			t.Fatalf("GET /v1/mirakl/metrics: HTTP %d", status)
		}
		for _, want := range []string{
			`mirakl_audience_refused{mount="mirakl",role="globex"} 1`,
			`mirakl_audience_refused{mount="mirakl",role="acme"} 0`,
			`mirakl_credentials_refused{mount="mirakl"} 0`,
		} {
			if !strings.Contains(body, want) {
				t.Errorf("mirakl/metrics has no %s:\n%s", want, body)
			}
		}
	})

	t.Run("the refusal holds back the refused role's requests", func(t *testing.T) {
		// After the refusal, at least 30s (doubling) between two requests
		// for globex's audience: one, or two if the hold ended already.
		n := 0
		for _, r := range a.fake.Seen() {
			if !r.Arrived.Before(refused) && r.Form.Get("audience") == globexAudience {
				n++
			}
		}
		if allowed := 1 + int(time.Since(refused)/(30*time.Second)); n > allowed {
			t.Errorf("%d requests for globex's audience in the %s since it was refused, want at most %d", n, time.Since(refused).Round(time.Second), allowed)
		}
	})

	t.Run("a new role for the refused audience is not stored", func(t *testing.T) {
		r := root.MustFail(t, "write", "mirakl/roles/globex-eu", "audience="+globexAudience)
		if out := r.Output(); !strings.Contains(out, "Code: 400") || !strings.Contains(out, "nothing was stored") {
			t.Errorf("vault write mirakl/roles/globex-eu for the refused audience: want 400 and nothing was stored:\n%s", out)
		}
		var list []string
		root.MustRunJSON(t, &list, "list", "-format=json", "mirakl/roles")
		if slices.Contains(list, "globex-eu") {
			t.Errorf("vault list mirakl/roles after the refused write: %v", list)
		}
	})

	t.Run("the company consents again: a write of the role brings it back", func(t *testing.T) {
		a.fake.RefuseAudience(globexAudience, "")
		e.writeRole("mirakl", "globex", globexAudience)
		forAudience(t, a, readRoleToken(t, root, "mirakl", "globex").accessToken(), globexAudience)
		if s := roleStatus(t, root, "mirakl", "globex"); s["audience_refused"] != false {
			t.Errorf("vault read mirakl/status/globex after the write: %v, want audience_refused false", s)
		}
	})
}
