//go:build bench

package benchmarks

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/fakemirakl"
	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/vaulttest"
)

// EnvProfileDir names the directory that TestVaultProfiles writes to.
const EnvProfileDir = "BENCH_PROFILE_DIR"

const profileSeconds = 10

// TestVaultProfiles is the tool for a figure that misses its goal: it loads
// the noop plugin and the cached mirakl read in turn (16 clients, 10s each)
// and records, for each, a CPU profile of the vault server (its
// sys/pprof/profile endpoint) and, when perf is installed, a perf profile of
// the plugin process, with both plugins built unstripped so that perf can
// name their functions. Not part of `make bench`; run it with
//
//	BENCH_PROFILE_DIR=/tmp/prof VAULT_BIN=... PLUGIN_BIN=... PLUGIN_VERSION=... \
//		go test -tags bench -run TestVaultProfiles -v -timeout 10m ./benchmarks/
//	go tool pprof -top /tmp/prof/vault-mirakl.pprof
//	perf report -i /tmp/prof/plugin-mirakl.perf.data --no-children
func TestVaultProfiles(t *testing.T) {
	dir := os.Getenv(EnvProfileDir)
	if dir == "" {
		t.Skipf("set %s to a directory to record profiles", EnvProfileDir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bins := vaulttest.RequireEnv(t)
	bins.PluginBin = buildCommand(t, "./cmd/vault-plugin-mirakl", filepath.Base(bins.PluginBin),
		"-X github.com/vault-plugin-mirakl/vault-plugin-mirakl.Version="+bins.PluginVersion)
	noopBin := buildCommand(t, "./internal/cmd/noop-plugin", noopCommand, "")
	perf, _ := exec.LookPath("perf")

	srv := vaulttest.Start(t, bins, vaulttest.Options{LogLevel: "info"})
	root := srv.Client(t)
	srv.RegisterPlugin(t)
	registerNoop(t, srv, root, noopBin)
	fake := fakemirakl.New(benchClientID, benchClientSecret)
	t.Cleanup(fake.Close)
	mustDo(t, "enabling kv1", root.Sys().Mount("kv1", &api.MountInput{Type: "kv", Options: map[string]string{"version": "1"}}))
	mustDo(t, "enabling noop", root.Sys().Mount("noop", &api.MountInput{Type: noopName}))
	mustDo(t, "enabling mirakl", root.Sys().Mount("mirakl", &api.MountInput{Type: vaulttest.DefaultPluginName}))
	configure(t, root, "mirakl", fake, nil)
	clients := readers(t, srv, readerToken(t, root), 16)
	ctx := context.Background()

	for _, tg := range []target{
		{name: "noop", path: "noop/token", observe: requireLease, command: noopCommand},
		{name: "mirakl", path: "mirakl/token", observe: requireLease, command: srv.Plugin().Command},
	} {
		readFor(ctx, clients, tg.path, time.Second, 0, tg.observe) // warm up
		var wg sync.WaitGroup
		wg.Go(func() {
			if err := vaultProfile(srv, filepath.Join(dir, "vault-"+tg.name+".pprof")); err != nil {
				t.Errorf("vault profile: %v", err)
			}
		})
		if perf != "" {
			pid := onlyProcess(t, srv, tg.command)
			wg.Go(func() {
				out := filepath.Join(dir, "plugin-"+tg.name+".perf.data")
				// G702: perf comes from PATH and out from the developer's own BENCH_PROFILE_DIR.
				cmd := exec.Command(perf, "record", "-g", "-F", "999", "-o", out, //nolint:gosec // see above
					"-p", strconv.Itoa(pid), "--", "sleep", strconv.Itoa(profileSeconds))
				if output, err := cmd.CombinedOutput(); err != nil {
					t.Errorf("perf record: %v\n%s", err, output)
				}
			})
		}
		st := readFor(ctx, clients, tg.path, profileSeconds*time.Second+500*time.Millisecond, 0, tg.observe)
		wg.Wait()
		t.Logf("%s: %s", tg.name, summarize(st))
	}
}

// vaultProfile saves a CPU profile of the vault server, taken over
// profileSeconds by its sys/pprof/profile endpoint.
func vaultProfile(srv *vaulttest.Server, path string) error {
	req, err := http.NewRequest(http.MethodGet, fmt.Sprintf("%s/v1/sys/pprof/profile?seconds=%d", srv.Addr, profileSeconds), nil)
	if err != nil {
		return err
	}
	req.Header.Set("X-Vault-Token", srv.RootToken())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("HTTP %d: %s", resp.StatusCode, body)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
