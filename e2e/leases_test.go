//go:build e2e

package e2e

import (
	"strings"
	"testing"
)

// Revoking a lease drops the cached token; disabling the mount with leases
// outstanding works, since revoking a Mirakl token lease never fails.
func TestLeases(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	acme := e.newAccount("acme")
	e.mount("mirakl")
	e.configure("mirakl", acme)
	cli := e.root()
	const expiresIn = 3599

	first := readToken(t, cli, "mirakl")

	t.Run("vault lease revoke", func(t *testing.T) {
		out := cli.MustRun(t, "lease", "revoke", first.LeaseID)
		if !strings.Contains(out, "queued successfully") && !strings.Contains(out, "Success") {
			t.Errorf("vault lease revoke: %s", out)
		}
		e.waitLeaseGone(first.LeaseID)
		next := readToken(t, cli, "mirakl")
		if next.accessToken() == first.accessToken() {
			t.Fatal("after revoking its lease the same token is served again")
		}
		issuedBy(t, acme, next.accessToken())
		// Fetched by this very read: the lease is the token's whole life.
		if next.LeaseDuration != expiresIn {
			t.Errorf("lease_duration of a fresh token %d, want the fake's expires_in %d", next.LeaseDuration, expiresIn)
		}
		first = next
	})

	t.Run("vault lease revoke -prefix mirakl/token", func(t *testing.T) {
		again := readToken(t, cli, "mirakl")
		if again.accessToken() != first.accessToken() {
			t.Fatalf("a second read got a new token instead of the cached one")
		}
		cli.MustRun(t, "lease", "revoke", "-prefix", "mirakl/token")
		e.waitLeaseGone(first.LeaseID)
		e.waitLeaseGone(again.LeaseID)
		next := readToken(t, cli, "mirakl")
		if next.accessToken() == first.accessToken() {
			t.Fatal("after revoke -prefix the same token is served again")
		}
		issuedBy(t, acme, next.accessToken())
	})

	t.Run("vault secrets disable with leases outstanding", func(t *testing.T) {
		outstanding := []*leasedToken{readToken(t, cli, "mirakl"), readToken(t, cli, "mirakl")}
		cli.MustRun(t, "secrets", "disable", "mirakl/")
		if out := cli.MustRun(t, "secrets", "list"); strings.Contains(out, "mirakl/") {
			t.Errorf("mirakl/ still listed after disable:\n%s", out)
		}
		for _, l := range outstanding {
			if r := cli.Run(t, "lease", "lookup", l.LeaseID); r.ExitCode == 0 {
				t.Errorf("lease %s survived the disable:\n%s", l.LeaseID, r.Output())
			}
		}
	})
}
