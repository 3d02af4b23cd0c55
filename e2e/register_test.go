//go:build e2e

package e2e

import (
	"strings"
	"testing"

	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/vaulttest"
)

// Registering without -version, as older guides do: Vault 1.21 and OpenBao
// 2.6 alike store the version the plugin reports, so that a plain `plugin
// info secret mirakl` is a 404, only `-version=` finds the entry, and the
// mount is pinned to that version. The mount runs the build that was
// registered and serves tokens.
func TestRegisterWithoutVersion(t *testing.T) { forEachServer(t, testRegisterWithoutVersion) }

func testRegisterWithoutVersion(t *testing.T, server vaulttest.Kind) {
	e := newEnvFor(t, server, vaulttest.Options{})
	acme := e.newAccount("acme")
	cli := e.root()
	p := e.vault.Plugin()

	cli.MustRun(t, "plugin", "register", "-sha256="+p.SHA256, "-command="+p.Command, "secret", "mirakl")
	cli.MustRun(t, "secrets", "enable", "-path=mirakl", "mirakl")

	if r := cli.Run(t, "plugin", "info", "secret", "mirakl"); r.ExitCode == 0 || !strings.Contains(r.Output(), "404") {
		t.Errorf("%s plugin info secret mirakl: exit %d, want a 404 (no unversioned entry):\n%s", server.Command(), r.ExitCode, r.Output())
	}
	if out := cli.MustRun(t, "plugin", "info", "-version="+p.Version, "secret", "mirakl"); !strings.Contains(out, p.SHA256) {
		t.Errorf("%s plugin info -version=%s secret mirakl: no sha256 %s in:\n%s", server.Command(), p.Version, p.SHA256, out)
	}
	want := pluginVersions{Pinned: p.Version, Running: p.Version, SHA256: p.SHA256}
	if got := mountVersions(t, cli, "mirakl"); got != want {
		t.Errorf("mirakl/ registered without -version: %+v, want %+v", got, want)
	}

	e.configure("mirakl", acme)
	issuedBy(t, acme, readToken(t, cli, "mirakl").accessToken())
}
