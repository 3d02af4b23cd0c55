package mirakl

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/fakemirakl"
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

// config with a role, read the role, delete config, write the role with
// another audience (or delete it), renew the role's lease: renewed. A lease
// remembers its role only while a config exists: leaseSource returns before
// it looks at the role when there is none, although the role is in storage
// all the same.
func TestPropsRegressionRoleLeaseRenewsWithTheConfigDeleted(t *testing.T) {
	t.Parallel()
	for name, change := range map[string]func(*testEnv){
		"role deleted": func(env *testEnv) {
			resp, err := env.request(logical.DeleteOperation, "roles/acme", nil)
			requireOK(t, resp, err)
		},
		"audience changed": func(env *testEnv) {
			resp, err := env.WriteRole("acme", map[string]any{"audience": globexAudience, "verify": false})
			requireOK(t, resp, err)
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			env := newRolesEnv(t)
			env.MustWriteRole("acme", acmeAudience)
			lease, _ := env.MustReadRoleToken("acme")
			resp, err := env.DeleteConfig()
			requireOK(t, resp, err)
			change(env)
			resp, err = env.RenewLease(lease)
			requireUserError(t, resp, err, `its role "acme"`)
			resp, err = env.RevokeLease(lease)
			requireOK(t, resp, err)
		})
	}
}

// config with a role, read the role, Mirakl answers 429 (Retry-After 60),
// restart, read mirakl/token (refused: the gate closes for a minute), read
// the role, read mirakl/token: a second request went out at once. The
// role's first read after the restart restores its stored token, and
// restoring installs it like a token from Mirakl (tokenCache.install), which
// opens the mount's gate: a stored token says nothing of Mirakl now, and
// every role restored during an outage lets requests through, past the
// gate's wait and Mirakl's own Retry-After: the next of any role's, and the
// restored token's own refresh when it is due (the model found both).
func TestPropsRegressionRestoringARoleTokenOpensTheMountsGate(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		age  time.Duration // of the role's token at the restart
		then func(*testEnv) (*logical.Response, error)
	}{
		"the next read of another token":   {time.Minute, func(env *testEnv) (*logical.Response, error) { return env.ReadToken(nil) }},
		"the restored token's own refresh": {50 * time.Minute, nil},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			env := newRolesEnv(t)
			env.MustWriteRole("acme", acmeAudience)
			_, acme := env.MustReadRoleToken("acme")
			env.clock.Advance(tc.age)
			env.fake.FailRandomly(1, fakemirakl.RateLimited("60"))
			env.restart()
			resp, err := env.ReadToken(nil)
			requireStatus(t, resp, err, http.StatusBadGateway, "")
			sent := env.fake.Requests()
			if _, tok := env.MustReadRoleToken("acme"); tok != acme {
				t.Fatal("the role's first read after the restart did not get its stored token")
			}
			env.settle()
			requireRequests(t, env, sent, "the role's first read after the restart, within Mirakl's Retry-After")
			if tc.then != nil {
				resp, err = tc.then(env)
				requireStatus(t, resp, err, http.StatusBadGateway, "the next not before")
				requireRequests(t, env, sent, "a read of mirakl/token within Mirakl's Retry-After, after a role's token was restored")
			}
		})
	}
}

// config and two roles, each read (mirakl/token too), their tokens past the
// refresh point, Mirakl answers 503, the periodic function runs (each token
// fails: the gate closes), the gate's wait passes, the periodic function
// runs: one request per token went out at once, not one for the mount. Each
// admitted request passes tokenCache.request on its own; gate.admit lets
// every one through once reopensAt has passed and records nothing until a
// probe ends, so that an outage costs Mirakl one request per token in use
// at each reopening, not one per mount however many roles.
func TestPropsRegressionPeriodicProbesOncePerRoleAfterAnOutage(t *testing.T) {
	t.Parallel()
	env := newRolesEnv(t)
	env.MustWriteRole("acme", acmeAudience)
	env.MustWriteRole("globex", globexAudience)
	env.MustReadRoleToken("acme")
	env.MustReadRoleToken("globex")
	env.MustReadToken()
	env.clock.Advance(50 * time.Minute) // every token 10 minutes from expiry: past its refresh point
	env.miraklDown()
	env.periodic() // the first failures: nobody knew of the outage yet
	env.clock.Advance(gateLastWait)
	sent := env.fake.Requests()
	env.periodic()
	requireRequests(t, env, sent+1, "one periodic call once the mount's gate reopened during an outage, with three tokens due")
}

// config, Mirakl refuses the audience, write the role globex with verify:
// the write fails (nothing stored), but mirakl/metrics shows series labelled
// role="globex" from then on, for a role that does not exist: the check's
// token source takes the role's series (newTokenSource calls forRole) before
// Mirakl has answered, and a failed write leaves them. Each refused write of
// a new name adds series for good (until a role of that name is created and
// deleted).
func TestPropsRegressionAFailedRoleWriteLeavesMetricSeries(t *testing.T) {
	t.Parallel()
	env := newRolesEnv(t)
	env.fake.RefuseAudience(globexAudience, "access_denied")
	resp, err := env.WriteRole("globex", map[string]any{"audience": globexAudience})
	requireUserError(t, resp, err, "nothing was stored")
	if strings.Contains(env.ReadMetricsRaw(), `role="globex"`) {
		t.Fatal("the metrics have series for the role globex, which a failed write did not create")
	}
}

// config, Mirakl answers 400 invalid_request to everything, read (refused:
// the mount's gate holds for 30 s), write the config with an audience and
// verify (the check, for that audience, is refused too: the write fails),
// then 1 s later the periodic function: a request went out. The write's new
// state did not take the old gate's refusal over (the audience differs), so
// its gate was open; the check's refusal concerned its audience alone, and
// copying what the check learnt back over the gate in use copied an open
// gate, lifting a hold that nothing had ended. A failed check may add to the
// holds in use, never lift one: a 503 to a check of a new secret shortened a
// refusal's 30 s hold to the outage's 5 s the same way, and a 503 to a role's
// check, which fails the mount's own gate, did it too (gate.failed set the
// hold from the check's failure alone).
func TestPropsRegressionAFailedCheckLiftsAHold(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		check func(*testEnv) (*logical.Response, error)
		fault fakemirakl.Fault // Mirakl's answer to the check
	}{
		"a config check refused for its audience": {
			func(env *testEnv) (*logical.Response, error) {
				return env.WriteConfig(map[string]any{"audience": acmeAudience, "verify": true})
			},
			fakemirakl.OAuthError(http.StatusBadRequest, "invalid_request", "no"),
		},
		"a new secret's check met an outage": {
			func(env *testEnv) (*logical.Response, error) {
				return env.WriteConfig(map[string]any{"client_secret": "a-new-secret", "verify": true})
			},
			fakemirakl.HTMLError(http.StatusServiceUnavailable),
		},
		"a role's check met an outage": {
			func(env *testEnv) (*logical.Response, error) {
				return env.WriteRole("acme", map[string]any{"audience": acmeAudience})
			},
			fakemirakl.HTMLError(http.StatusServiceUnavailable),
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			env := newRolesEnv(t) // no token yet
			env.fake.FailRandomly(1, fakemirakl.OAuthError(http.StatusBadRequest, "invalid_request", "no"))
			resp, err := env.ReadToken(nil)
			requireStatus(t, resp, err, http.StatusBadGateway, "Mirakl refused the credentials")
			env.fake.FailRandomly(1, tc.fault)
			resp, err = tc.check(env)
			if err == nil && (resp == nil || !resp.IsError()) {
				t.Fatal("the write succeeded: its check should have failed")
			}
			sent := env.fake.Requests()
			env.clock.Advance(10 * time.Second) // past an outage's first waits, within a refusal's hold
			env.periodic()
			resp, err = env.ReadToken(nil)
			requireStatus(t, resp, err, http.StatusBadGateway, "the next not before")
			requireRequests(t, env, sent, "the periodic function and a read within the refusal's hold, after a failed check")
		})
	}
}
