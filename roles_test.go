package mirakl

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/fakemirakl"
)

// The audiences of the role tests: two seller companies.
const (
	acmeAudience   = "2f6a3c1e-9b4d-4e7a-8c1f-5d2b7e9a0c3d"
	globexAudience = "https://miraklconnect.com/companies/globex"
)

// newRolesEnv is a configured mount whose fake serves the default token and
// both companies' audiences.
func newRolesEnv(t *testing.T, opts ...fakemirakl.Option) *testEnv {
	t.Helper()
	env := newTestEnv(t, append([]fakemirakl.Option{fakemirakl.WithAudiences("", acmeAudience, globexAudience)}, opts...)...)
	env.Configure(map[string]any{"verify": false})
	return env
}

func (e *testEnv) WriteRole(name string, data map[string]any) (*logical.Response, error) {
	op := logical.CreateOperation
	checked, exists, err := e.backend.HandleExistenceCheck(e.ctx, &logical.Request{Operation: logical.UpdateOperation, Path: "roles/" + name, Storage: e.storage})
	if err != nil || !checked {
		e.t.Fatalf("existence check of role %s: checked %v, error %v", name, checked, err)
	}
	if exists {
		op = logical.UpdateOperation
	}
	return e.request(op, "roles/"+name, data)
}

func (e *testEnv) MustWriteRole(name, audience string) {
	e.t.Helper()
	resp, err := e.WriteRole(name, map[string]any{"audience": audience, "verify": false})
	requireOK(e.t, resp, err)
}

func (e *testEnv) ReadRoleToken(name string, data map[string]any) (*logical.Response, error) {
	return e.request(logical.ReadOperation, "token/"+name, data)
}

func (e *testEnv) MustReadRoleToken(name string) (*logical.Response, string) {
	e.t.Helper()
	resp, err := e.ReadRoleToken(name, nil)
	requireOK(e.t, resp, err)
	return resp, resp.Data["access_token"].(string)
}

// requireAudience: the fake issued token for audience.
func requireAudience(t *testing.T, env *testEnv, token, audience string) {
	t.Helper()
	got, issued := env.fake.AudienceOf(token)
	if !issued || got != audience {
		t.Fatalf("the token was issued %v, for audience %q; want %q", issued, got, audience)
	}
}

func (e *testEnv) storedRoleToken(name string) *logical.StorageEntry {
	e.t.Helper()
	raw, err := e.storage.Get(e.ctx, roleTokenStoragePrefix+name)
	if err != nil {
		e.t.Fatal(err)
	}
	return raw
}

func TestRolesAreWrittenReadListedAndDeleted(t *testing.T) {
	t.Parallel()
	env := newRolesEnv(t)
	env.MustWriteRole("acme", acmeAudience)
	resp, err := env.WriteRole("globex", map[string]any{"audience": globexAudience, "min_ttl": "20m", "verify": false})
	requireOK(t, resp, err)

	resp, err = env.request(logical.ReadOperation, "roles/globex", nil)
	requireOK(t, resp, err)
	requireData(t, "globex", resp.Data, map[string]any{"audience": globexAudience, "min_ttl": int64(1200)})

	// An update changes the fields it names.
	resp, err = env.WriteRole("globex", map[string]any{"min_ttl": "5m", "verify": false})
	requireOK(t, resp, err)
	resp, err = env.request(logical.ReadOperation, "roles/globex", nil)
	requireOK(t, resp, err)
	requireData(t, "globex updated", resp.Data, map[string]any{"audience": globexAudience, "min_ttl": int64(300)})

	resp, err = env.request(logical.ListOperation, "roles/", nil)
	requireOK(t, resp, err)
	if keys, _ := resp.Data["keys"].([]string); !slices.Equal(keys, []string{"acme", "globex"}) {
		t.Fatalf("list: %v", resp.Data)
	}

	resp, err = env.request(logical.DeleteOperation, "roles/acme", nil)
	requireOK(t, resp, err)
	if resp, err = env.request(logical.ReadOperation, "roles/acme", nil); err != nil || resp != nil {
		t.Fatalf("a deleted role reads as %#v, %v", resp, err)
	}
	requireRequests(t, env, 0, "roles written with verify=false")
}

// Every field is checked before anything is stored or sent.
func TestRoleInputIsChecked(t *testing.T) {
	t.Parallel()
	env := newRolesEnv(t)
	for _, tc := range []struct {
		data map[string]any
		want string
	}{
		{map[string]any{}, "audience is required"},
		{map[string]any{"audience": ""}, "audience is required"},
		{map[string]any{"audience": strings.Repeat("a", 257)}, "audience is longer than 256 bytes"},
		{map[string]any{"audience": "two words"}, "audience may hold only printable ASCII characters without spaces"},
		{map[string]any{"audience": "caf\u00e9"}, "audience may hold only printable ASCII characters without spaces"},
		{map[string]any{"audience": acmeAudience, "min_ttl": "25h"}, "min_ttl must be zero or a positive duration of at most 24h0m0s"},
	} {
		resp, err := env.WriteRole("acme", tc.data)
		requireUserError(t, resp, err, tc.want)
	}
	if raw, _ := env.storage.Get(env.ctx, roleStoragePrefix+"acme"); raw != nil {
		t.Fatal("a refused write stored the role")
	}
	// Names follow Vault's usual pattern: others are no path of the engine.
	for _, name := range []string{"-acme", "acme-", "ac me", "a/b"} {
		if _, err := env.request(logical.UpdateOperation, "roles/"+name, map[string]any{"audience": acmeAudience}); err == nil {
			t.Errorf("role name %q was accepted", name)
		}
	}
	requireRequests(t, env, 0, "after refused writes")
}

// A role's token is requested with the role's audience as a fourth field, is
// cached per role and shared by its readers, and is for that audience only.
func TestRoleTokenIsForItsAudience(t *testing.T) {
	t.Parallel()
	env := newRolesEnv(t)
	resp, err := env.WriteRole("acme", map[string]any{"audience": acmeAudience}) // verified: one request
	requireOK(t, resp, err)
	env.MustWriteRole("globex", globexAudience)
	requireRequests(t, env, 1, "after the verified role write")

	_, acme := env.MustReadRoleToken("acme")
	requireAudience(t, env, acme, acmeAudience)
	requireRequests(t, env, 1, "a read after the verified write") // the check's token serves it
	_, globex := env.MustReadRoleToken("globex")
	requireAudience(t, env, globex, globexAudience)
	_, plain := env.MustReadToken()
	requireAudience(t, env, plain, "")
	for range 5 {
		if _, again := env.MustReadRoleToken("acme"); again != acme {
			t.Fatal("a second read of acme got another token")
		}
	}
	requireRequests(t, env, 3, "after cached reads")
	for i, seen := range env.fake.Seen() {
		if got := seen.Form.Get("audience"); !slices.Contains([]string{"", acmeAudience, globexAudience}, got) {
			t.Errorf("request %d carried audience %q", i, got)
		}
	}

	resp, err = env.ReadRoleToken("nope", nil)
	requireUserError(t, resp, err, `there is no role "nope"`)
	if env.backend.loadedMount().sourceFor("nope") != nil {
		t.Fatal("a read of no role left a source in memory")
	}
	if strings.Contains(env.ReadMetricsRaw(), "nope") {
		t.Fatal("a read of no role made a metric series")
	}
}

// A role write checks the audience with Mirakl unless verify=false: a refusal
// stores nothing.
func TestRoleWriteVerifiesTheAudience(t *testing.T) {
	t.Parallel()
	env := newRolesEnv(t)
	env.fake.RefuseAudience(globexAudience, "access_denied")
	resp, err := env.WriteRole("globex", map[string]any{"audience": globexAudience})
	requireUserError(t, resp, err, "nothing was stored")
	if raw, _ := env.storage.Get(env.ctx, roleStoragePrefix+"globex"); raw != nil {
		t.Fatal("a refused role was stored")
	}
	if strings.Contains(env.ReadMetricsRaw(), `role="globex"`) {
		t.Fatal("a role write whose check failed left series for a role it did not create")
	}
	// The refusal concerned globex: acme's check goes out at once.
	resp, err = env.WriteRole("acme", map[string]any{"audience": acmeAudience})
	requireOK(t, resp, err)
	if env.storedRoleToken("acme") == nil {
		t.Fatal("the verified role's token was not stored")
	}

	unconfigured := newTestEnv(t)
	resp, err = unconfigured.WriteRole("acme", map[string]any{"audience": acmeAudience})
	requireUserError(t, resp, err, "not configured yet")
	resp, err = unconfigured.WriteRole("acme", map[string]any{"audience": acmeAudience, "verify": false})
	requireOK(t, resp, err)
}

// A refusal of one audience holds that role's requests only; the others are
// served, and status and metrics show which role it is.
func TestARefusedAudienceHoldsOnlyItsRole(t *testing.T) {
	t.Parallel()
	env := newRolesEnv(t)
	env.MustWriteRole("acme", acmeAudience)
	env.MustWriteRole("globex", globexAudience)
	env.fake.RefuseAudience(globexAudience, "access_denied")

	resp, err := env.ReadRoleToken("globex", nil)
	requireStatus(t, resp, err, http.StatusBadGateway, "access_denied")
	requireRequests(t, env, 1, "a refusal is not retried within the request")
	resp, err = env.ReadRoleToken("globex", nil)
	requireStatus(t, resp, err, http.StatusBadGateway, "the next not before")
	requireRequests(t, env, 1, "globex is held")

	_, acme := env.MustReadRoleToken("acme")
	requireAudience(t, env, acme, acmeAudience)
	env.MustReadToken()
	requireRequests(t, env, 3, "acme and the default token are not held")

	status, err := env.request(logical.ReadOperation, "status/globex", nil)
	requireOK(t, status, err)
	if status.Data["audience_refused"] != true || status.Data["requests_held"] != true || status.Data["refusal_hold"] != true {
		t.Fatalf("status of globex: %v", status.Data)
	}
	status, err = env.request(logical.ReadOperation, "status/acme", nil)
	requireOK(t, status, err)
	if status.Data["audience_refused"] != false || status.Data["requests_held"] != false {
		t.Fatalf("status of acme: %v", status.Data)
	}
	all := env.ReadStatus()
	if roles := all["roles"].(map[string]any); len(roles) != 2 || all["requests_held"] != false || all["refusal_hold"] != false {
		t.Fatalf("status: %v", all)
	}
	metrics := env.ReadMetrics()
	if metrics.must(metricAudienceRefused, labelRole, "globex") != 1 || metrics.must(metricAudienceRefused, labelRole, "acme") != 0 ||
		metrics.must(metricRefused) != 0 {
		t.Fatal("metrics do not single out globex")
	}
	if metrics.must(metricTokenRequests, "outcome", "refused", labelRole, "globex") != 1 ||
		metrics.must(metricTokenRequests, "outcome", "token", labelRole, "acme") != 1 {
		t.Fatal("requests are not counted by role")
	}

	// The hold passes, Mirakl serves globex again: its next read gets a token.
	env.fake.RefuseAudience(globexAudience, "")
	env.clock.Advance(refusalLastWait)
	_, globex := env.MustReadRoleToken("globex")
	requireAudience(t, env, globex, globexAudience)
}

// What concerns every audience closes the mount's one gate: an outage, or
// Mirakl refusing the client itself, costs one request per attempt for the
// mount, however many roles are read.
func TestTheMountsGateHoldsEveryRole(t *testing.T) {
	t.Parallel()
	for name, fail := range map[string]func(*testEnv){
		"outage":         (*testEnv).miraklDown,
		"invalid_client": func(e *testEnv) { e.fake.SetCredentials(testClientID, "rotated-at-mirakl") },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			env := newRolesEnv(t)
			env.MustWriteRole("acme", acmeAudience)
			env.MustWriteRole("globex", globexAudience)
			fail(env)
			resp, err := env.ReadRoleToken("acme", nil)
			requireStatus(t, resp, err, http.StatusBadGateway, "")
			sent := env.fake.Requests()
			for _, role := range []string{"globex", "acme"} {
				resp, err = env.ReadRoleToken(role, nil)
				requireStatus(t, resp, err, http.StatusBadGateway, "the next not before")
			}
			resp, err = env.ReadToken(nil)
			requireStatus(t, resp, err, http.StatusBadGateway, "the next not before")
			requireRequests(t, env, sent, "reads of other roles while the mount's gate is closed")
		})
	}
}

// A lease remembers its role: renewing it after the role was deleted or
// changed its audience fails and says why; revoking it always succeeds.
func TestARoleLeaseRemembersItsRole(t *testing.T) {
	t.Parallel()
	env := newRolesEnv(t)
	env.MustWriteRole("acme", acmeAudience)
	lease, _ := env.MustReadRoleToken("acme")
	env.clock.Advance(time.Minute)
	resp, err := env.RenewLease(lease)
	requireOK(t, resp, err)

	resp, err = env.WriteRole("acme", map[string]any{"min_ttl": "5m", "verify": false})
	requireOK(t, resp, err)
	resp, err = env.RenewLease(lease)
	requireOK(t, resp, err) // the same audience: the token is as good as before

	resp, err = env.WriteRole("acme", map[string]any{"audience": globexAudience, "verify": false})
	requireOK(t, resp, err)
	resp, err = env.RenewLease(lease)
	requireUserError(t, resp, err, `its role "acme" now names another audience`)
	resp, err = env.RevokeLease(lease)
	requireOK(t, resp, err)

	env.MustWriteRole("acme", acmeAudience)
	lease, _ = env.MustReadRoleToken("acme")
	resp, err = env.request(logical.DeleteOperation, "roles/acme", nil)
	requireOK(t, resp, err)
	resp, err = env.RenewLease(lease)
	requireUserError(t, resp, err, `its role "acme" was deleted`)
	resp, err = env.RevokeLease(lease)
	requireOK(t, resp, err)

	// Without a config the role is still checked, from storage.
	env.MustWriteRole("acme", acmeAudience)
	lease, _ = env.MustReadRoleToken("acme")
	resp, err = env.DeleteConfig()
	requireOK(t, resp, err)
	resp, err = env.RenewLease(lease)
	requireOK(t, resp, err)
	resp, err = env.request(logical.DeleteOperation, "roles/acme", nil)
	requireOK(t, resp, err)
	resp, err = env.RenewLease(lease)
	requireUserError(t, resp, err, `its role "acme" was deleted`)
	env.Configure(map[string]any{"verify": false})

	// A lease of the default token carries no role.
	plain, _ := env.MustReadToken()
	if _, ok := plain.Secret.InternalData[internalRole]; ok {
		t.Fatal("a lease of mirakl/token names a role")
	}
}

// Each role's token is kept in storage, bound to the config and the role's
// audience, and served after a restart with no request; a role write or
// delete drops it, and a config write drops every role's.
func TestRoleTokensAreStoredPerRole(t *testing.T) {
	t.Parallel()
	env := newRolesEnv(t)
	env.MustWriteRole("acme", acmeAudience)
	env.MustWriteRole("globex", globexAudience)
	_, acme := env.MustReadRoleToken("acme")
	_, globex := env.MustReadRoleToken("globex")
	if env.storedRoleToken("acme") == nil || env.storedRoleToken("globex") == nil {
		t.Fatal("the roles' tokens are not stored")
	}

	t.Run("restart with Mirakl down", func(t *testing.T) {
		env.restart()
		env.miraklDown()
		sent := env.fake.Requests()
		if _, got := env.MustReadRoleToken("acme"); got != acme {
			t.Fatal("acme's stored token was not served")
		}
		if _, got := env.MustReadRoleToken("globex"); got != globex {
			t.Fatal("globex's stored token was not served")
		}
		requireRequests(t, env, sent, "reads after the restart")
		env.fake.FailRandomly(0, fakemirakl.Fault{})
	})

	t.Run("bound to the audience", func(t *testing.T) {
		// globex's entry written under acme's key is not acme's token.
		if err := env.storage.Put(env.ctx, &logical.StorageEntry{Key: roleTokenStoragePrefix + "acme", Value: env.storedRoleToken("globex").Value}); err != nil {
			t.Fatal(err)
		}
		env.restart()
		_, got := env.MustReadRoleToken("acme")
		requireAudience(t, env, got, acmeAudience)
	})

	t.Run("a role write drops its token", func(t *testing.T) {
		_, before := env.MustReadRoleToken("acme")
		resp, err := env.WriteRole("acme", map[string]any{"min_ttl": "5m", "verify": false})
		requireOK(t, resp, err)
		if env.storedRoleToken("acme") != nil {
			t.Fatal("the role write kept its stored token")
		}
		if _, after := env.MustReadRoleToken("acme"); after == before {
			t.Fatal("the role write kept its cached token")
		}
		if _, got := env.MustReadRoleToken("globex"); got != globex {
			t.Fatal("a write of acme dropped globex's token")
		}
	})

	t.Run("a config write drops every role's token", func(t *testing.T) {
		env.MustReadRoleToken("acme")
		resp, err := env.WriteConfig(map[string]any{"verify": false})
		requireOK(t, resp, err)
		keys, err := env.storage.List(env.ctx, roleTokenStoragePrefix)
		if err != nil || len(keys) != 0 {
			t.Fatalf("stored role tokens after a config write: %v, %v", keys, err)
		}
		if _, got := env.MustReadRoleToken("globex"); got == globex {
			t.Fatal("a config write kept globex's cached token")
		}
		// The roles themselves stay.
		resp, err = env.request(logical.ListOperation, "roles/", nil)
		requireOK(t, resp, err)
		if keys, _ := resp.Data["keys"].([]string); len(keys) != 2 {
			t.Fatalf("roles after a config write: %v", resp.Data)
		}
	})

	t.Run("a role delete drops its token", func(t *testing.T) {
		env.MustReadRoleToken("acme")
		resp, err := env.request(logical.DeleteOperation, "roles/acme", nil)
		requireOK(t, resp, err)
		if env.storedRoleToken("acme") != nil {
			t.Fatal("the role delete kept its stored token")
		}
		resp, err = env.ReadRoleToken("acme", nil)
		requireUserError(t, resp, err, `there is no role "acme"`)
		if strings.Contains(env.ReadMetricsRaw(), `role="acme"`) {
			t.Fatal("a deleted role's series remain")
		}
	})
}

// The hand-out check covers the role: a read that waited while its role
// changed audience does not get the old audience's token.
func TestAReadNeverGetsATokenOfTheRolesOldAudience(t *testing.T) {
	t.Parallel()
	env := newRolesEnv(t)
	env.MustWriteRole("acme", acmeAudience)
	hold, release := releaser(t)
	env.fake.Enqueue(fakemirakl.Hang(hold))
	done := make(chan readResult, 1)
	go func() {
		resp, err := env.ReadRoleToken("acme", nil)
		done <- readResult{resp, err}
	}()
	waitFor(t, "the read's request", func() bool { return env.fake.Requests() == 1 })
	old := env.backend.loadedMount().sourceFor("acme")
	writeDone := make(chan error, 1)
	go func() {
		resp, err := env.WriteRole("acme", map[string]any{"audience": globexAudience, "verify": false})
		if err == nil && resp.IsError() {
			err = resp.Error()
		}
		writeDone <- err
	}()
	// The write closes the old source, which cancels its request.
	if err := receive(t, "the role write", writeDone); err != nil {
		t.Fatal(err)
	}
	waitGroup(t, "the old audience's request to end", &old.cache.running)
	release()
	got := receive(t, "the read", done)
	requireOK(t, got.resp, got.err)
	requireAudience(t, env, got.resp.Data["access_token"].(string), globexAudience)
}

// A role nobody reads holds nothing: once its token has expired the periodic
// function forgets it, and it sends nothing.
func TestAnIdleRoleIsForgotten(t *testing.T) {
	t.Parallel()
	env := newRolesEnv(t)
	env.MustWriteRole("acme", acmeAudience)
	env.MustReadRoleToken("acme")
	env.clock.Advance(time.Hour)
	sent := env.fake.Requests()
	env.runPeriodic()
	if env.backend.loadedMount().sourceFor("acme") != nil {
		t.Fatal("the periodic function kept an idle role")
	}
	requireRequests(t, env, sent, "the periodic function with an idle role")
	_, tok := env.MustReadRoleToken("acme") // loads it again
	requireAudience(t, env, tok, acmeAudience)
}

// A standby whose storage changed under it drops the role, and loads it
// again on next use.
func TestInvalidationDropsTheRole(t *testing.T) {
	t.Parallel()
	env := newRolesEnv(t)
	env.MustWriteRole("acme", acmeAudience)
	env.MustReadRoleToken("acme")
	mount := env.backend.loadedMount()
	env.backend.invalidate(env.ctx, roleStoragePrefix+"acme")
	if mount.sourceFor("acme") != nil {
		t.Fatal("an invalidated role stayed in memory")
	}
	env.MustReadRoleToken("acme")
	env.backend.invalidate(env.ctx, roleTokenStoragePrefix+"acme")
	if mount.sourceFor("acme") != nil {
		t.Fatal("a role whose stored token changed stayed in memory")
	}
}

// After a restart, the periodic function loads the roles whose tokens are
// stored, so that a role read before the restart is refreshed ahead before
// any reader comes back; a role whose stored token expired is not kept.
func TestThePeriodicFunctionRestoresRoleTokens(t *testing.T) {
	t.Parallel()
	env := newRolesEnv(t)
	env.MustWriteRole("acme", acmeAudience)
	env.MustWriteRole("globex", globexAudience)
	env.MustReadRoleToken("acme")
	env.MustReadRoleToken("globex")
	env.runPeriodic() // notes in storage that readers got them
	env.restart()
	sent := env.fake.Requests()
	env.clock.Advance(50 * time.Minute) // past the refresh point
	env.runPeriodic()
	env.settle()
	requireRequests(t, env, sent+2, "the periodic call after a restart")
	mount := env.backend.loadedMount()
	for _, role := range []string{"acme", "globex"} {
		src := mount.sourceFor(role)
		if src == nil || src.cache.current() == nil || src.cache.current().remaining(env.clock.Now()) < 50*time.Minute {
			t.Fatalf("%s was not refreshed ahead after the restart", role)
		}
	}
	env.restart()
	env.clock.Advance(2 * time.Hour)
	sent = env.fake.Requests()
	env.runPeriodic()
	if mount := env.backend.loadedMount(); mount.sourceFor("acme") != nil || mount.sourceFor("globex") != nil {
		t.Fatal("roles whose stored tokens expired were kept in memory")
	}
	requireRequests(t, env, sent, "the periodic call with expired stored tokens")
}

// mirakl/status stays bounded with many roles: at most maxStatusRoles, those
// whose requests are held first; the rest are counted.
func TestStatusListsABoundedNumberOfRoles(t *testing.T) {
	t.Parallel()
	env := newRolesEnv(t)
	env.MustWriteRole("zz-refused", globexAudience)
	for i := range maxStatusRoles + 4 {
		name := fmt.Sprintf("company-%03d", i)
		env.MustWriteRole(name, acmeAudience)
		env.MustReadRoleToken(name)
	}
	env.fake.RefuseAudience(globexAudience, "invalid_grant")
	resp, err := env.ReadRoleToken("zz-refused", nil)
	requireStatus(t, resp, err, http.StatusBadGateway, "invalid_grant")

	status := env.ReadStatus()
	roles := status["roles"].(map[string]any)
	if len(roles) != maxStatusRoles || status["roles_active"] != maxStatusRoles+5 || status["roles_omitted"] != 5 {
		t.Fatalf("status lists %d roles, active %v, omitted %v", len(roles), status["roles_active"], status["roles_omitted"])
	}
	if _, ok := roles["zz-refused"]; !ok {
		t.Fatal("the held role, last by name, was left out")
	}
	if _, ok := roles["company-103"]; ok {
		t.Fatal("the list is not cut by name after the held roles")
	}
}

// The mount's gate lets one attempt out at a time, whichever role it is for:
// at an outage's onset, the requests of other roles already in flight stop
// retrying once one has failed, and count as one failure; when the hold
// ends, one role's probe goes out and the others wait for its outcome rather
// than each sending their own.
func TestRolesShareOneAttemptAtATime(t *testing.T) {
	t.Parallel()
	hangThen503 := func(hold <-chan struct{}) fakemirakl.Fault {
		f := fakemirakl.HTMLError(http.StatusServiceUnavailable)
		f.Hold = hold
		return f
	}
	t.Run("at an outage's onset", func(t *testing.T) {
		t.Parallel()
		env := newRolesEnv(t)
		env.MustWriteRole("acme", acmeAudience)
		env.MustWriteRole("globex", globexAudience)
		hold, release := releaser(t)
		env.fake.Enqueue(hangThen503(hold))
		globex := make(chan readResult, 1)
		go func() {
			resp, err := env.ReadRoleToken("globex", nil)
			globex <- readResult{resp, err}
		}()
		waitFor(t, "globex's request", func() bool { return env.fake.Requests() == 1 })
		env.miraklDown()
		resp, err := env.ReadRoleToken("acme", nil)
		requireStatus(t, resp, err, http.StatusBadGateway, "unavailable")
		requireRequests(t, env, 1+1+defaultRetryPolicy.MaxRetries, "acme's first attempt of the outage, with its retries")
		release()
		r := receive(t, "globex's read", globex)
		requireStatus(t, r.resp, r.err, http.StatusBadGateway, "unavailable")
		env.settle()
		requireRequests(t, env, 1+1+defaultRetryPolicy.MaxRetries, "globex's request, which stopped retrying")
		// One failure in the gate's count: the hold is the first one's.
		env.clock.Advance(gateFirstWait)
		resp, err = env.ReadRoleToken("acme", nil)
		requireStatus(t, resp, err, http.StatusBadGateway, "unavailable")
		requireRequests(t, env, 1+1+defaultRetryPolicy.MaxRetries+1, "the probe after the first hold")
	})
	t.Run("while the first failing request still retries", func(t *testing.T) {
		t.Parallel()
		env := newRolesEnv(t)
		env.MustWriteRole("acme", acmeAudience)
		env.MustWriteRole("globex", globexAudience)
		holdAcme, releaseAcme := releaser(t)
		holdGlobex, releaseGlobex := releaser(t)
		env.fake.Enqueue(hangThen503(holdAcme), fakemirakl.HTMLError(http.StatusServiceUnavailable), hangThen503(holdGlobex))
		acme := make(chan readResult, 1)
		go func() {
			resp, err := env.ReadRoleToken("acme", nil)
			acme <- readResult{resp, err}
		}()
		waitFor(t, "acme's request", func() bool { return env.fake.Requests() == 1 })
		env.fake.FailRandomly(1, fakemirakl.HTMLError(http.StatusServiceUnavailable))
		globex := make(chan readResult, 1)
		go func() {
			resp, err := env.ReadRoleToken("globex", nil)
			globex <- readResult{resp, err}
		}()
		waitFor(t, "globex's retry", func() bool { return env.fake.Requests() == 3 })
		// While globex's request retries, another token's read waits for its
		// outcome rather than making attempts of its own.
		resp, err := env.ReadToken(nil)
		requireStatus(t, resp, err, http.StatusBadGateway, "HTTP 503 (last attempt at")
		requireStatus(t, resp, err, http.StatusBadGateway, "the next is under way")
		requireRequests(t, env, 3, "a read of the default token while globex's request retries")
		releaseAcme()
		r := receive(t, "acme's read", acme)
		requireStatus(t, r.resp, r.err, http.StatusBadGateway, "unavailable")
		requireRequests(t, env, 3, "acme's request, which met an attempt of globex's failing")
		releaseGlobex()
		r = receive(t, "globex's read", globex)
		requireStatus(t, r.resp, r.err, http.StatusBadGateway, "unavailable")
		// acme's failure closed the gate: globex's request stops too.
		requireRequests(t, env, 3, "globex's request, which stopped retrying once acme's had failed")
	})
	t.Run("when the hold ends", func(t *testing.T) {
		t.Parallel()
		env := newRolesEnv(t)
		env.MustWriteRole("acme", acmeAudience)
		env.MustWriteRole("globex", globexAudience)
		env.miraklDown()
		resp, err := env.ReadRoleToken("acme", nil)
		requireStatus(t, resp, err, http.StatusBadGateway, "unavailable")
		sent := env.fake.Requests()
		env.clock.Advance(gateLastWait)
		hold, release := releaser(t)
		env.fake.Enqueue(hangThen503(hold))
		acme := make(chan readResult, 1)
		go func() {
			resp, err := env.ReadRoleToken("acme", nil)
			acme <- readResult{resp, err}
		}()
		waitFor(t, "acme's probe", func() bool { return env.fake.Requests() == sent+1 })
		resp, err = env.ReadRoleToken("globex", nil)
		requireStatus(t, resp, err, http.StatusBadGateway, "the next is under way")
		resp, err = env.ReadToken(nil)
		requireStatus(t, resp, err, http.StatusBadGateway, "the next is under way")
		release()
		r := receive(t, "acme's read", acme)
		requireStatus(t, r.resp, r.err, http.StatusBadGateway, "unavailable")
		requireRequests(t, env, sent+1, "one probe for the mount")
		// The probe ended: the next attempt waits for the hold it set.
		resp, err = env.ReadRoleToken("globex", nil)
		requireStatus(t, resp, err, http.StatusBadGateway, "the next not before")
	})
}

// Restoring a role's stored token says nothing of Mirakl now: the mount's
// gate, held after an outage, stays held for every role.
func TestRestoringARoleTokenLeavesTheGateAsItIs(t *testing.T) {
	t.Parallel()
	env := newRolesEnv(t)
	env.MustWriteRole("acme", acmeAudience)
	env.MustWriteRole("globex", globexAudience)
	env.MustReadRoleToken("globex")
	env.restart()
	env.fake.FailRandomly(1, fakemirakl.RateLimited("240"))
	resp, err := env.ReadRoleToken("acme", nil)
	requireStatus(t, resp, err, http.StatusBadGateway, "unavailable")
	sent := env.fake.Requests()
	env.MustReadRoleToken("globex") // restored from storage
	env.clock.Advance(time.Minute)  // past the backoff, within Retry-After
	resp, err = env.ReadRoleToken("acme", nil)
	requireStatus(t, resp, err, http.StatusBadGateway, "the next not before")
	requireRequests(t, env, sent, "a read within Retry-After, after another role's token was restored")
}
