//go:build e2e

package e2e

import (
	"strings"
	"testing"

	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/vaulttest"
)

// Registering without -version, as older guides do, works in both servers,
// which differ in what they store. Vault keeps an unversioned catalog entry,
// which a plain `vault plugin info` finds, and a mount that is pinned to no
// version. OpenBao stores the version the plugin reports: a plain `bao plugin
// info secret mirakl` is a 404, only `-version=` finds the entry, and the
// mount is pinned to that version. Either way the mount runs the build that
// was registered and serves tokens.
func TestRegisterWithoutVersion(t *testing.T) { forEachServer(t, testRegisterWithoutVersion) }

func testRegisterWithoutVersion(t *testing.T, server vaulttest.Kind) {
	e := newEnvFor(t, server, vaulttest.Options{})
	acme := e.newAccount("acme")
	cli := e.root()
	p := e.vault.Plugin()

	cli.MustRun(t, "plugin", "register", "-sha256="+p.SHA256, "-command="+p.Command, "secret", "mirakl")
	cli.MustRun(t, "secrets", "enable", "-path=mirakl", "mirakl")

	plain := cli.Run(t, "plugin", "info", "secret", "mirakl")
	versioned := cli.Run(t, "plugin", "info", "-version="+p.Version, "secret", "mirakl")
	found, missing, pinned := plain, versioned, ""
	if server == vaulttest.OpenBao {
		found, missing, pinned = versioned, plain, p.Version
	}
	if found.ExitCode != 0 || !strings.Contains(found.Stdout, p.SHA256) {
		t.Errorf("%s plugin info %s: exit %d, want the entry with sha256 %s:\n%s",
			server.Command(), strings.Join(found.Args[2:], " "), found.ExitCode, p.SHA256, found.Output())
	}
	if missing.ExitCode == 0 || !strings.Contains(missing.Output(), "404") {
		t.Errorf("%s plugin info %s: exit %d, want a 404 (%s stores no such entry):\n%s",
			server.Command(), strings.Join(missing.Args[2:], " "), missing.ExitCode, server, missing.Output())
	}

	want := pluginVersions{Pinned: pinned, Running: p.Version, SHA256: p.SHA256}
	if got := mountVersions(t, cli, "mirakl"); got != want {
		t.Errorf("mirakl/ registered without -version: %+v, want %+v", got, want)
	}

	e.configure("mirakl", acme)
	issuedBy(t, acme, readToken(t, cli, "mirakl").accessToken())
}
