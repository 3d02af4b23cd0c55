//go:build e2e

package e2e

import (
	"net/http"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/fakemirakl"
	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/vaulttest"
)

// A real server (file storage, initialised and unsealed) keeps the config
// and the token across a restart, the plugin process being killed and a
// plugin reload: with Mirakl refusing every request after the first token,
// reads go on serving that token, and Mirakl sees no request.
func TestDurability(t *testing.T) { forEachServer(t, testDurability) }

func testDurability(t *testing.T, server vaulttest.Kind) {
	e := newEnvFor(t, server, vaulttest.Options{Storage: vaulttest.StorageFile})
	acme := e.newAccount("acme")
	e.mount("mirakl")
	e.configure("mirakl", acme)
	cli := e.root()
	before := readToken(t, cli, "mirakl")
	issuedBy(t, acme, before.accessToken())
	// Mirakl is down from now on: any request would fail the reads below.
	acme.fake.FailRandomly(1, fakemirakl.HTMLError(http.StatusServiceUnavailable))
	requests := acme.fake.Requests()

	sameToken := func(t *testing.T, after string) {
		t.Helper()
		if got := readToken(t, cli, "mirakl").accessToken(); got != before.accessToken() {
			t.Errorf("after %s: token %q, want the one from before, %q", after, got, before.accessToken())
		}
		if n := acme.fake.Requests() - requests; n != 0 {
			t.Errorf("after %s: %d requests to Mirakl, want none", after, n)
		}
	}

	t.Run("vault restart", func(t *testing.T) {
		e.vault.Restart(t)
		e.vault.WaitActive(t)
		checkConfig(t, cli, "mirakl", acme, "after the restart")
		sameToken(t, "a restart")
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
		sameToken(t, "the plugin was killed")
		if now := e.vault.PluginPIDs(t); len(now) != 1 || now[0] == pids[0] {
			t.Errorf("plugin processes after the kill: %v (killed %d)", now, pids[0])
		}
		checkConfig(t, cli, "mirakl", acme, "after the plugin was killed")
	})

	t.Run("vault plugin reload", func(t *testing.T) {
		pids := e.vault.PluginPIDs(t)
		cli.MustRun(t, "plugin", "reload", "-plugin=mirakl")
		sameToken(t, "vault plugin reload")
		// Whether Vault starts a new process or a new backend in the same
		// one, nothing of the old backend's memory is left.
		t.Logf("plugin processes before the reload %v, after %v", pids, e.vault.PluginPIDs(t))
		checkConfig(t, cli, "mirakl", acme, "after the reload")
	})
}
