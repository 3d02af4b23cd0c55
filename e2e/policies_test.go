//go:build e2e

package e2e

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/vaulttest"
)

// Two teams, two Mirakl accounts, two mounts, and the README's policies.
func TestTeamPoliciesAndAccounts(t *testing.T) { forEachServer(t, testTeamPoliciesAndAccounts) }

func testTeamPoliciesAndAccounts(t *testing.T, server vaulttest.Kind) {
	e := newEnvFor(t, server, vaulttest.Options{})
	acme, globex := e.newAccount("acme"), e.newAccount("globex")
	e.mount("mirakl")
	e.mount("mirakl-globex")
	e.configure("mirakl", acme)
	e.configure("mirakl-globex", globex)

	// The policies exactly as the README shows them for mirakl/, and the same
	// files with the mount path changed for the second account.
	admin, reader := readExample(t, "policies/mirakl-admin.hcl"), readExample(t, "policies/mirakl-reader.hcl")
	root := e.root()
	root.MustRun(t, "policy", "write", "mirakl-admin", filepath.Join(repoRoot, "examples/policies/mirakl-admin.hcl"))
	root.MustRun(t, "policy", "write", "mirakl-reader", filepath.Join(repoRoot, "examples/policies/mirakl-reader.hcl"))
	root.MustRun(t, "policy", "write", "mirakl-globex-admin",
		writeFile(t, filepath.Join(e.dir, "globex-admin.hcl"), replaceAll(t, admin, "mirakl/", "mirakl-globex/")))
	root.MustRun(t, "policy", "write", "mirakl-globex-reader",
		writeFile(t, filepath.Join(e.dir, "globex-reader.hcl"), replaceAll(t, reader, "mirakl/", "mirakl-globex/")))

	as := func(policy string) *vaulttest.CLI {
		token := strings.TrimSpace(root.MustRun(t, "token", "create", "-policy="+policy, "-field=token"))
		return e.vault.CLIWithToken(token)
	}
	acmeReader, acmeAdmin := as("mirakl-reader"), as("mirakl-admin")
	globexReader, globexAdmin := as("mirakl-globex-reader"), as("mirakl-globex-admin")

	t.Run("reader reads tokens of its account only", func(t *testing.T) {
		issuedBy(t, acme, readToken(t, acmeReader, "mirakl").accessToken())
		issuedBy(t, globex, readToken(t, globexReader, "mirakl-globex").accessToken())
		denied(t, acmeReader.Run(t, "read", "mirakl-globex/token"))
		denied(t, globexReader.Run(t, "read", "mirakl/token"))
	})

	t.Run("reader is denied the config", func(t *testing.T) {
		denied(t, acmeReader.Run(t, "read", "mirakl/config"))
		denied(t, acmeReader.Run(t, "write", "mirakl/config", "client_id=intruder"))
		denied(t, acmeReader.Run(t, "delete", "mirakl/config"))
		denied(t, acmeReader.Run(t, "lease", "revoke", "-prefix", "mirakl/token"))
	})

	t.Run("admin manages its config and never sees the secret", func(t *testing.T) {
		checkConfig(t, acmeAdmin, "mirakl", acme, "as its admin")
		acmeAdmin.MustRun(t, "write", "mirakl/config", "min_ttl=15m")
		if cfg := checkConfig(t, acmeAdmin, "mirakl", acme, "after the min_ttl update"); cfg["min_ttl"] != float64(900) {
			t.Errorf("min_ttl after update: %v", cfg["min_ttl"])
		}
		issuedBy(t, acme, readToken(t, acmeAdmin, "mirakl").accessToken())
		acmeAdmin.MustRun(t, "lease", "revoke", "-prefix", "mirakl/token")
	})

	t.Run("admin of one account gets nothing of the other", func(t *testing.T) {
		denied(t, acmeAdmin.Run(t, "read", "mirakl-globex/config"))
		denied(t, acmeAdmin.Run(t, "write", "mirakl-globex/config", "client_id="+acme.clientID))
		denied(t, acmeAdmin.Run(t, "read", "mirakl-globex/token"))
		denied(t, acmeAdmin.Run(t, "lease", "revoke", "-prefix", "mirakl-globex/token"))
		denied(t, globexAdmin.Run(t, "read", "mirakl/config"))
		issuedBy(t, globex, readToken(t, globexAdmin, "mirakl-globex").accessToken())
	})

	t.Run("each mount talks to its own account", func(t *testing.T) {
		for _, a := range []*account{acme, globex} {
			if s := a.fake.Stats(); s.Refused != 0 || s.Issued == 0 {
				t.Errorf("%s fake: %+v; want tokens issued and no refusals", a.name, s)
			}
		}
	})
}
