//go:build e2e

package e2e

import (
	"strings"
	"testing"

	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/vaulttest"
)

// A lease ending, however it ends (revoke, revoke -prefix, the reader's Vault
// token revoked or expired), leaves the shared token cached: no request to
// Mirakl. "vault write -f mirakl/config" replaces it. Disabling the mount
// with leases outstanding works, since revoking a lease never fails.
func TestLeases(t *testing.T) { forEachServer(t, testLeases) }

func testLeases(t *testing.T, server vaulttest.Kind) {
	e := newEnvFor(t, server, vaulttest.Options{})
	acme := e.newAccount("acme")
	e.mount("mirakl")
	e.configure("mirakl", acme)
	cli := e.root()
	cached := readToken(t, cli, "mirakl")
	requests := acme.fake.Requests()

	stillCached := func(t *testing.T, after string) {
		t.Helper()
		if again := readToken(t, cli, "mirakl"); again.accessToken() != cached.accessToken() {
			t.Fatalf("after %s the cached token was replaced", after)
		}
		if got := acme.fake.Requests(); got != requests {
			t.Fatalf("after %s the fake saw %d more requests", after, got-requests)
		}
	}

	t.Run("vault lease revoke", func(t *testing.T) {
		lease := readToken(t, cli, "mirakl")
		out := cli.MustRun(t, "lease", "revoke", lease.LeaseID)
		if !strings.Contains(out, "queued successfully") && !strings.Contains(out, "Success") {
			t.Errorf("vault lease revoke: %s", out)
		}
		e.waitLeaseGone(lease.LeaseID)
		stillCached(t, "vault lease revoke")
	})

	t.Run("vault lease revoke -prefix mirakl/token", func(t *testing.T) {
		lease := readToken(t, cli, "mirakl")
		cli.MustRun(t, "lease", "revoke", "-prefix", "mirakl/token")
		e.waitLeaseGone(lease.LeaseID)
		e.waitLeaseGone(cached.LeaseID)
		stillCached(t, "vault lease revoke -prefix")
	})

	cli.MustRun(t, "policy", "write", "mirakl-reader", "../examples/policies/mirakl-reader.hcl")
	t.Run("vault token revoke -self", func(t *testing.T) {
		reader := e.vault.CLIWithToken(strings.TrimSpace(cli.MustRun(t, "token", "create", "-policy=mirakl-reader", "-field=token")))
		lease := readToken(t, reader, "mirakl")
		reader.MustRun(t, "token", "revoke", "-self")
		e.waitLeaseGone(lease.LeaseID)
		stillCached(t, "the reader's Vault token was revoked")
	})

	t.Run("the reader's Vault token expires", func(t *testing.T) {
		reader := e.vault.CLIWithToken(strings.TrimSpace(cli.MustRun(t, "token", "create",
			"-policy=mirakl-reader", "-ttl=2s", "-explicit-max-ttl=2s", "-field=token")))
		lease := readToken(t, reader, "mirakl")
		e.waitLeaseGone(lease.LeaseID) // Vault revokes a token's leases when it expires
		stillCached(t, "the reader's Vault token expired")
	})

	t.Run("vault write -f mirakl/config", func(t *testing.T) {
		cli.MustRun(t, "write", "-f", "mirakl/config")
		fresh := readToken(t, cli, "mirakl")
		if fresh.accessToken() == cached.accessToken() {
			t.Fatal("rewriting the config kept the cached token")
		}
		issuedBy(t, acme, fresh.accessToken())
		if got := acme.fake.Requests(); got != requests+1 {
			t.Errorf("rewriting the config made %d requests, want 1 (the verification, whose token is served)", got-requests)
		}
		// Rounded down: the fake's expires_in less the moments between the
		// write and this read, which a busy machine can stretch past a second.
		if fresh.LeaseDuration > 3599 || fresh.LeaseDuration < 3596 {
			t.Errorf("lease_duration of a fresh token %d, want the fake's expires_in (3599) rounded down, less at most 3s", fresh.LeaseDuration)
		}
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
