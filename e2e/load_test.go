//go:build e2e

package e2e

import (
	"errors"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/fakemirakl"
)

// Many clients read mirakl/token through a real Vault for a bounded time
// while the fake fails 60% of its answers and tokens expire every few
// seconds. Every read returns a valid token or a clear 502; Mirakl sees a
// bounded number of requests; the plugin process neither dies nor leaks.
func TestLoadWithFailingUpstream(t *testing.T) {
	t.Parallel()
	const (
		clients   = 16
		duration  = 12 * time.Second
		expiresIn = 4 // seconds
	)
	e := newEnv(t)
	acme := e.newAccount("load", fakemirakl.WithExpiresIn(expiresIn))
	e.mount("mirakl")
	// min_ttl 2s: a token is refreshed when it has less than 2s left, so
	// about every 2s, whatever the read rate.
	e.configure("mirakl", acme, "min_ttl=2s", "request_timeout=2s")
	pluginPIDs := e.vault.PluginPIDs(t)
	acme.fake.FailRandomly(0.6, fakemirakl.HTMLError(503))
	before := acme.fake.Requests()

	client := e.vault.Client(t)
	var ok, failed, warned atomic.Int64
	var mu sync.Mutex
	var problems []string
	deadline := time.Now().Add(duration)
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				secret, err := client.Logical().Read("mirakl/token")
				if problem := checkLoadRead(acme, expiresIn, secret, err); problem != "" {
					mu.Lock()
					problems = append(problems, problem)
					mu.Unlock()
					return
				}
				switch {
				case err != nil:
					failed.Add(1)
				case len(secret.Warnings) > 0:
					warned.Add(1) // served the still-valid cached token
					ok.Add(1)
				default:
					ok.Add(1)
				}
			}
		})
	}
	waitGroup(t, duration+2*time.Minute, "the clients' reads to end", &wg)

	for _, p := range problems {
		t.Error(p)
	}
	requests := acme.fake.Requests() - before
	stats := acme.fake.Stats()
	t.Logf("reads: %d ok (%d with a serve-while-valid warning), %d failed; Mirakl requests: %d (%d tokens issued, %d faults)", ok.Load(), warned.Load(), failed.Load(), requests, stats.Issued, stats.Faults)
	if ok.Load() == 0 {
		t.Fatal("no read succeeded")
	}
	// About one refresh every (expiresIn - min_ttl) = 2s, each costing at most
	// 1 + MaxRetries requests; double it for slack. Far below the read count.
	lifetimes := int(duration/(2*time.Second)) + 1
	if limit := 2 * lifetimes * 5; requests > limit {
		t.Errorf("Mirakl saw %d requests for %d reads, more than the bound %d", requests, ok.Load()+failed.Load(), limit)
	}
	if now := e.vault.PluginPIDs(t); len(now) != 1 || len(pluginPIDs) != 1 || now[0] != pluginPIDs[0] {
		t.Errorf("the plugin process changed under load (before %v, after %v): it crashed", pluginPIDs, now)
	}
	if log, err := os.ReadFile(e.vault.LogPath); err != nil || strings.Contains(string(log), "panic") {
		t.Error("the server log mentions a panic")
	}
}

// checkLoadRead returns what is wrong with one read's outcome, or "".
func checkLoadRead(a *account, expiresIn int, secret *api.Secret, err error) string {
	if err != nil {
		var resp *api.ResponseError
		if !errors.As(err, &resp) || resp.StatusCode != http.StatusBadGateway || !strings.Contains(err.Error(), "Mirakl token endpoint unavailable") {
			return "a failed read is not a clear 502: " + err.Error()
		}
		return ""
	}
	if secret == nil || secret.Data == nil {
		return "a read returned nothing"
	}
	token, _ := secret.Data["access_token"].(string)
	if !slices.Contains(a.fake.IssuedTokens(), token) {
		return "a read returned a token the fake never issued"
	}
	if secret.LeaseDuration < 1 || secret.LeaseDuration > expiresIn || !secret.Renewable {
		return "a read returned a lease that does not follow the token"
	}
	return ""
}
