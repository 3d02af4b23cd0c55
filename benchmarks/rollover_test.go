//go:build bench

package benchmarks

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/fakemirakl"
	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/vaulttest"
)

const (
	// Rollover: tokens of rolloverExpiresIn with min_ttl 2s are refreshed in
	// the background from half their life on.
	rolloverExpiresIn = 10
	rolloverMinTTL    = "2s"
	goalRolloverMax   = 2.0 // max read latency in the window against the cached-read p99

	proxyReads = 1000
)

// measureRollover reads one token through its refresh window, one client
// reading as fast as Vault answers, with Mirakl healthy (across two
// rollovers), hanging, and failing: no read should wait on Mirakl, so the
// slowest read stays near the cached-read floor. Each read alternates with a
// read of the main mount's cached token, far from any refresh: the floor
// under the same conditions (Vault revoking the short leases, the machine's
// noise), side by side.
func measureRollover(t *testing.T, ctx context.Context, srv *vaulttest.Server, root *api.Client, token string, floor summary, rep *report) {
	scenarios := []struct {
		name  string
		fault *fakemirakl.Fault
	}{
		{"healthy", nil},
		{"hanging", &fakemirakl.Fault{Delay: time.Hour}},
		{"failing (503)", &fakemirakl.Fault{Status: http.StatusServiceUnavailable, ContentType: "text/html", Body: "<html>down</html>"}},
	}
	client := readers(t, srv, token, 1)[0]
	for _, sc := range scenarios {
		mount := "mirakl-rollover-" + strings.Fields(sc.name)[0]
		fake := fakemirakl.New(benchClientID, benchClientSecret, fakemirakl.WithExpiresIn(rolloverExpiresIn))
		t.Cleanup(fake.Close)
		mustDo(t, "enabling "+mount, root.Sys().Mount(mount, &api.MountInput{Type: vaulttest.DefaultPluginName}))
		configure(t, root, mount, fake, map[string]any{"min_ttl": rolloverMinTTL}) // verified: the token is cached
		issued, _ := fake.IssuedAt(fake.IssuedTokens()[0])
		// Healthy: across two rollovers. Otherwise until three seconds before
		// the cached token expires: a token is served while at least two
		// seconds are left (its lease rounded down, and a second's margin);
		// after that a read has nothing valid to serve and must wait, as it
		// should.
		until := issued.Add(2 * rolloverExpiresIn * time.Second)
		if sc.fault != nil {
			fake.FailRandomly(1, *sc.fault)
			until = issued.Add(rolloverExpiresIn*time.Second - 3*time.Second)
		}
		before := fake.Requests()
		var window, control []time.Duration
		for time.Now().Before(until) {
			for path, into := range map[string]*[]time.Duration{mount + "/token": &window, "mirakl/token": &control} {
				began := time.Now()
				secret, err := client.Logical().ReadWithContext(ctx, path)
				if err == nil {
					err = requireLease(secret)
				}
				if err != nil {
					t.Fatalf("rollover, Mirakl %s: reading %s: %v", sc.name, path, err)
				}
				*into = append(*into, time.Since(began))
			}
		}
		slices.Sort(window)
		slices.Sort(control)
		slowest := window[len(window)-1]
		ratio := float64(slowest) / float64(floor.p99)
		rep.add("Rollover, Mirakl "+sc.name+": one client reading through a token's refresh window (tokens of "+strconv.Itoa(rolloverExpiresIn)+"s, min_ttl "+rolloverMinTTL+")",
			fmt.Sprintf("p50 %s · p99 %s · max %s over %d reads; %s to Mirakl; interleaved cached reads of another mount: p50 %s · p99 %s · max %s; max / cached-read p99 (%s) = %.1fx",
				ms(percentile(window, 0.5)), ms(percentile(window, 0.99)), ms(slowest), len(window), plural(fake.Requests()-before, "request"),
				ms(percentile(control, 0.5)), ms(percentile(control, 0.99)), ms(control[len(control)-1]), ms(floor.p99), ratio),
			"max ≤ 2x the cached-read p99", verdict(ratio <= goalRolloverMax))
	}
}

// measureProxyLeases counts the leases that 1,000 reads create, straight to
// Vault and through Vault Proxy with examples/proxy/proxy.hcl.
func measureProxyLeases(t *testing.T, ctx context.Context, srv *vaulttest.Server, root *api.Client, token string, bins vaulttest.Env, rep *report) {
	fake := fakemirakl.New(benchClientID, benchClientSecret)
	t.Cleanup(fake.Close)
	for _, mount := range []string{"mirakl-direct", "mirakl-proxied"} {
		mustDo(t, "enabling "+mount, root.Sys().Mount(mount, &api.MountInput{Type: vaulttest.DefaultPluginName}))
		configure(t, root, mount, fake, nil)
	}

	// The proxy's own token keeps the default policy: auto-auth looks itself up.
	proxyToken, err := root.Auth().Token().Create(&api.TokenCreateRequest{Policies: []string{"bench-reader"}, TTL: "2h"})
	mustDo(t, "creating the proxy's token", err)
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "vault-token")
	mustDo(t, "writing the proxy's token", os.WriteFile(tokenFile, []byte(proxyToken.Auth.ClientToken), 0o600))
	example, err := os.ReadFile(filepath.Join("..", "examples", "proxy", "proxy.hcl"))
	mustDo(t, "reading examples/proxy/proxy.hcl", err)
	proxyAddr := fmt.Sprintf("127.0.0.1:%d", vaulttest.FreePort(t))
	config := strings.NewReplacer(
		"https://vault.example.com:8200", srv.Addr,
		"/etc/vault-proxy/vault-token", tokenFile,
		"127.0.0.1:8100", proxyAddr,
	).Replace(string(example))
	configPath := filepath.Join(dir, "proxy.hcl")
	mustDo(t, "writing the proxy's config", os.WriteFile(configPath, []byte(config), 0o600))
	vaulttest.StartProxy(t, bins, configPath)

	app, err := api.NewClient(&api.Config{Address: "http://" + proxyAddr, Timeout: 30 * time.Second})
	mustDo(t, "creating the proxy's client", err)
	app.SetToken("")
	direct := readers(t, srv, token, 1)[0]

	readN := func(c *api.Client, mount string) {
		deadline := time.Now().Add(30 * time.Second)
		for done := 0; done < proxyReads; {
			if _, err := c.Logical().ReadWithContext(ctx, mount+"/token"); err != nil {
				if time.Now().After(deadline) { // the proxy may still be starting
					t.Fatalf("reading %s: %v", mount, err)
				}
				time.Sleep(100 * time.Millisecond)
				continue
			}
			done++
		}
	}
	leases := func(mount string) int {
		secret, err := root.Logical().List("sys/leases/lookup/" + mount + "/token/")
		mustDo(t, "listing the leases of "+mount, err)
		if secret == nil {
			return 0
		}
		keys, _ := secret.Data["keys"].([]any)
		return len(keys)
	}
	readN(direct, "mirakl-direct")
	readN(app, "mirakl-proxied")
	rep.add("Leases per 1,000 reads of one cached token",
		fmt.Sprintf("straight to Vault: %d; through Vault Proxy (examples/proxy, cache on): %d", leases("mirakl-direct"), leases("mirakl-proxied")),
		"one per token through the proxy", verdict(leases("mirakl-proxied") == 1))
}
