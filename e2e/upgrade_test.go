//go:build e2e

package e2e

import (
	"net/http"
	"testing"
	"time"

	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/fakemirakl"
	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/vaulttest"
)

// upgradeVersion stamps the second build: any version that differs from
// PLUGIN_VERSION, so that the running version tells the builds apart.
const upgradeVersion = "v9.9.9-upgrade"

// The README's "Upgrading the plugin", command for command: a second release
// beside the first, registered under its own version, pinned with `vault
// secrets tune`, started with `vault plugin reload`; then the rollback. The
// config, the token and the leases issued by either version carry over both
// ways: with Mirakl refusing every request after the first token, each
// version serves that token.
func TestUpgrade(t *testing.T) { forEachServer(t, testUpgrade) }

func testUpgrade(t *testing.T, server vaulttest.Kind) {
	e := newEnvFor(t, server, vaulttest.Options{})
	acme := e.newAccount("acme")
	cli := e.root()
	old := e.vault.Plugin()
	e.mount("mirakl")
	e.configure("mirakl", acme)
	oldLease := readToken(t, cli, "mirakl")
	if got := mountVersions(t, cli, "mirakl"); got.Running != old.Version {
		t.Fatalf("before the upgrade the mount runs %s, want %s", got.Running, old.Version)
	}

	next := e.vault.BuildPlugin(t, upgradeVersion)
	if next.Version == old.Version || next.SHA256 == old.SHA256 {
		t.Fatalf("the second build %+v cannot be told from the first %+v", next, old)
	}

	var newLease *leasedToken
	if !t.Run("upgrade", func(t *testing.T) {
		cli.MustRun(t, "plugin", "register", "-sha256="+next.SHA256, "-version="+next.Version, "-command="+next.Command, "secret", "mirakl")
		cli.MustRun(t, "secrets", "tune", "-plugin-version="+next.Version, "mirakl/")
		// The pin alone changes nothing that runs: the reload is the step
		// that the README cannot leave out.
		if got := mountVersions(t, cli, "mirakl"); got.Running != old.Version {
			t.Fatalf("after the tune alone the mount runs %s, want still %s until the reload", got.Running, old.Version)
		}
		requests := acme.fake.Requests()
		acme.fake.FailRandomly(1, fakemirakl.HTMLError(http.StatusServiceUnavailable)) // Mirakl down from now on
		cli.MustRun(t, "plugin", "reload", "-plugin=mirakl")

		requireRunning(t, e.vault, "mirakl", next, old, "after the reload")
		checkConfig(t, cli, "mirakl", acme, "after the upgrade")
		cli.MustRun(t, "lease", "lookup", oldLease.LeaseID)
		newLease = readToken(t, cli, "mirakl")
		// A new process, which serves the token the old one stored.
		if newLease.accessToken() != oldLease.accessToken() {
			t.Errorf("the new version serves token %q, want the old version's %q", newLease.accessToken(), oldLease.accessToken())
		}
		if n := acme.fake.Requests() - requests; n != 0 {
			t.Errorf("the upgrade cost %d token requests, want none", n)
		}
		// The new version revokes what the old one issued: the lease type
		// kept its name.
		cli.MustRun(t, "lease", "revoke", oldLease.LeaseID)
		e.waitLeaseGone(oldLease.LeaseID)
	}) {
		return
	}

	t.Run("rollback", func(t *testing.T) {
		cli.MustRun(t, "secrets", "tune", "-plugin-version="+old.Version, "mirakl/")
		// This mount only, through the API path: Vault 1.21's
		// `vault plugin reload -mounts=mirakl/` sends the request to
		// sys/plugins/reload/unknown (404) in the root namespace.
		cli.MustRun(t, "write", "sys/plugins/reload/backend", "mounts=mirakl/")

		requireRunning(t, e.vault, "mirakl", old, next, "after the rollback")
		checkConfig(t, cli, "mirakl", acme, "after the rollback")
		cli.MustRun(t, "lease", "lookup", newLease.LeaseID)
		if got := readToken(t, cli, "mirakl").accessToken(); got != oldLease.accessToken() {
			t.Errorf("after the rollback: token %q, want the stored %q", got, oldLease.accessToken())
		}
		if n := acme.fake.Requests(); n != 1 {
			t.Errorf("after the rollback the fake saw %d token requests, want the config write's 1", n)
		}
		cli.MustRun(t, "lease", "revoke", newLease.LeaseID)
		e.waitLeaseGone(newLease.LeaseID)
	})
}

// pluginVersions is what `vault secrets list -detailed` says of one mount:
// the version it is pinned to and the build it runs.
type pluginVersions struct {
	Pinned  string `json:"plugin_version"`
	Running string `json:"running_plugin_version"`
	SHA256  string `json:"running_sha256"`
}

// mountVersions reads the versions of mount with `vault secrets list -detailed`,
// the command the README shows.
func mountVersions(t *testing.T, cli *vaulttest.CLI, mount string) pluginVersions {
	t.Helper()
	var mounts map[string]pluginVersions
	cli.MustRunJSON(t, &mounts, "secrets", "list", "-detailed", "-format=json")
	m, ok := mounts[mount+"/"]
	if !ok {
		t.Fatalf("vault secrets list -detailed: no %s/ in %v", mount, mounts)
	}
	return m
}

// requireRunning fails the test unless mount is pinned to running and runs
// it, and the server runs running's binary and no longer stopped's.
func requireRunning(t *testing.T, s *vaulttest.Server, mount string, running, stopped vaulttest.Plugin, when string) {
	t.Helper()
	got := mountVersions(t, s.CLI(), mount)
	if want := (pluginVersions{running.Version, running.Version, running.SHA256}); got != want {
		t.Fatalf("%s/ %s: pinned %s, running %s (sha256 %s); want %s (sha256 %s)",
			mount, when, got.Pinned, got.Running, got.SHA256, running.Version, running.SHA256)
	}
	// Vault stops a version's process once no mount uses it, not always
	// before the reload returns.
	eventually(t, 10*time.Second, "only "+running.Command+" to run under "+s.Opts.Name, func() bool {
		return len(childrenRunning(t, s, running)) == 1 && len(childrenRunning(t, s, stopped)) == 0
	})
}

// childrenRunning lists the server's processes of plugin build p.
func childrenRunning(t *testing.T, s *vaulttest.Server, p vaulttest.Plugin) []int {
	t.Helper()
	pids, err := vaulttest.ChildProcesses(s.Process().PID(), p.Command)
	if err != nil {
		t.Fatal(err)
	}
	return pids
}

// The same upgrade in a three-node cluster, as the README's cluster note has
// it: the new binary in every node's plugin directory, then register, tune
// and a global reload once, here through a standby (in OpenBao, the reload
// through the active node: its standbys reload only themselves). The active
// node runs the new build at once; a node that becomes active later starts it
// too.
func TestUpgradeCluster(t *testing.T) { forEachServer(t, testUpgradeCluster) }

func testUpgradeCluster(t *testing.T, server vaulttest.Kind) {
	e := newClusterEnvFor(t, server, 3)
	c := e.cluster
	acme := e.newAccount("acme")
	leader := c.Leader(t)
	old := leader.Plugin()
	leader.RegisterPlugin(t)
	leader.EnablePlugin(t, "mirakl")
	leader.CLI().MustRun(t, "write", "mirakl/config",
		"client_id="+acme.clientID, "client_secret="+acme.clientSecret, "token_url="+acme.fake.TokenURL())
	lease := readToken(t, leader.CLI(), "mirakl")

	// The nodes share one plugin directory: one build is on every node.
	next := leader.BuildPlugin(t, upgradeVersion)
	var standby *vaulttest.Server
	for _, s := range c.Nodes {
		if s != leader {
			standby = s
			break
		}
	}
	cli := standby.CLI()
	cli.MustRun(t, "plugin", "register", "-sha256="+next.SHA256, "-version="+next.Version, "-command="+next.Command, "secret", "mirakl")
	cli.MustRun(t, "secrets", "tune", "-plugin-version="+next.Version, "mirakl/")
	// Vault's standbys forward the reload to the active node. OpenBao's
	// answer it themselves, as every request that writes nothing, and
	// reload only their own mount, even with -scope=global.
	reload := cli
	if server == vaulttest.OpenBao {
		reload = leader.CLI()
	}
	reload.MustRun(t, "plugin", "reload", "-plugin=mirakl", "-scope=global")
	requireRunning(t, leader, "mirakl", next, old, "on the active "+leader.Opts.Name)
	issuedBy(t, acme, readToken(t, cli, "mirakl").accessToken())
	standbyWants := 0 // Vault's standbys mount no engine
	if server.StandbysRunPlugins() {
		// OpenBao's run the version their copy of the mount table names,
		// which (in 2.6.2) keeps the old pin until they become active; the
		// process forwards every request to the active node.
		standbyWants = 1
	}
	for _, s := range c.Nodes {
		if s != leader {
			if pids := append(childrenRunning(t, s, old), childrenRunning(t, s, next)...); len(pids) != standbyWants {
				t.Errorf("standby %s runs plugin processes %v, want %d (%s)", s.Opts.Name, pids, standbyWants, server)
			}
		}
	}

	t.Run("active node killed", func(t *testing.T) {
		acme.fake.FailRandomly(1, fakemirakl.HTMLError(http.StatusServiceUnavailable)) // Mirakl down from now on
		leader.Kill(t)
		now := c.WaitForLeader(t)
		requireRunning(t, now, "mirakl", next, old, "on "+now.Opts.Name+", active after the failover")
		checkConfig(t, now.CLI(), "mirakl", acme, "after the failover")
		now.CLI().MustRun(t, "lease", "lookup", lease.LeaseID)
		// The new build on the new active node serves the token the old
		// build stored on the old one.
		if got := readToken(t, now.CLI(), "mirakl").accessToken(); got != lease.accessToken() {
			t.Errorf("after the failover: token %q, want the stored %q", got, lease.accessToken())
		}
		requireRequests(t, acme, 1, "after the failover")
	})
}
