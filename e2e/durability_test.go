//go:build e2e

package e2e

import (
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/vaulttest"
)

// A real server (file storage, initialised and unsealed) keeps the config
// across a restart and survives the plugin process being killed.
func TestDurability(t *testing.T) { forEachServer(t, testDurability) }

func testDurability(t *testing.T, server vaulttest.Kind) {
	e := newEnvFor(t, server, vaulttest.Options{Storage: vaulttest.StorageFile})
	acme := e.newAccount("acme")
	e.mount("mirakl")
	e.configure("mirakl", acme)
	cli := e.root()
	before := readToken(t, cli, "mirakl")
	issuedBy(t, acme, before.accessToken())

	t.Run("vault restart", func(t *testing.T) {
		e.vault.Restart(t)
		e.vault.WaitActive(t)
		checkConfig(t, cli, "mirakl", acme, "after the restart")
		issuedBy(t, acme, readToken(t, cli, "mirakl").accessToken())
		// The lease from before the restart is still known to Vault.
		cli.MustRun(t, "lease", "lookup", before.LeaseID)
	})

	t.Run("plugin killed with SIGKILL", func(t *testing.T) {
		pids := e.vault.PluginPIDs(t)
		if len(pids) != 1 {
			out, _ := exec.Command("pgrep", "-a", "vault").Output()
			t.Fatalf("want one %s process under vault (pid %d), found %v; vault processes:\n%s",
				e.vault.Plugin().Command, e.vault.Process().PID(), pids, out)
		}
		plugin, err := os.FindProcess(pids[0])
		if err == nil {
			err = plugin.Kill() // SIGKILL on unix
		}
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, "the plugin process to die", func() bool {
			return !slices.Contains(e.vault.PluginPIDs(t), pids[0])
		})
		issuedBy(t, acme, readToken(t, cli, "mirakl").accessToken())
		if now := e.vault.PluginPIDs(t); len(now) != 1 || now[0] == pids[0] {
			t.Errorf("plugin processes after the kill: %v (killed %d)", now, pids[0])
		}
		checkConfig(t, cli, "mirakl", acme, "after the plugin was killed")
	})
}
