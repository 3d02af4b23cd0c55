//go:build e2e

package e2e

import (
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/fakemirakl"
	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/vaulttest"
)

// A herd of readers through a real Vault, once the cached token has expired
// during an outage in which Mirakl rate-limits with a Retry-After of an
// hour: the gate lets one request through, and every read fails at once
// with a 502 that names the failure and when the next attempt is due.
func TestReaderHerdDuringAnOutage(t *testing.T) { forEachServer(t, testReaderHerdDuringAnOutage) }

func testReaderHerdDuringAnOutage(t *testing.T, server vaulttest.Kind) {
	const (
		readers   = 16
		duration  = 3 * time.Second
		expiresIn = 4 // seconds
	)
	e := newEnvFor(t, server, vaulttest.Options{})
	acme := e.newAccount("outage", fakemirakl.WithExpiresIn(expiresIn))
	e.mount("mirakl")
	e.configure("mirakl", acme, "min_ttl=0s", "request_timeout=2s")
	readToken(t, e.root(), "mirakl")

	acme.fake.FailRandomly(1, fakemirakl.RateLimited("3600"))
	before := acme.fake.Requests()
	client := e.vault.Client(t)
	eventually(t, 2*expiresIn*time.Second, "the cached token to expire", func() bool {
		_, err := client.Logical().Read("mirakl/token")
		return err != nil
	})

	var reads, held atomic.Int64
	var mu sync.Mutex
	var problems []string
	deadline := time.Now().Add(duration)
	var wg sync.WaitGroup
	for range readers {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				_, err := client.Logical().Read("mirakl/token")
				reads.Add(1)
				var resp *api.ResponseError
				if !errors.As(err, &resp) || resp.StatusCode != http.StatusBadGateway || !strings.Contains(err.Error(), "Mirakl token endpoint unavailable: HTTP 429") {
					mu.Lock()
					problems = append(problems, "a read during the outage is not the gate's 502: "+errorText(err))
					mu.Unlock()
					return
				}
				if strings.Contains(err.Error(), "the next not before") {
					held.Add(1)
				}
			}
		})
	}
	wg.Wait()
	for _, p := range problems {
		t.Error(p)
	}
	requests := acme.fake.Requests() - before
	t.Logf("%d readers, %d reads in %s (%d held by the gate); Mirakl saw %d requests", readers, reads.Load(), duration, held.Load(), requests)
	if requests != 1 {
		t.Fatalf("Mirakl saw %d requests during the outage, want 1 (Retry-After 3600, capped at 5m)", requests)
	}
	if held.Load() != reads.Load() {
		t.Fatalf("%d of %d reads did not say when the next attempt is due", reads.Load()-held.Load(), reads.Load())
	}
	var status struct {
		Data map[string]any `json:"data"`
	}
	e.root().MustRunJSON(t, &status, "read", "-format=json", "mirakl/status")
	if status.Data["requests_held"] != true || status.Data["next_attempt"] == nil {
		t.Fatalf("status does not show the hold: %v", status.Data)
	}
}

func errorText(err error) string {
	if err == nil {
		return "no error"
	}
	return err.Error()
}
