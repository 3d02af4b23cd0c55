//go:build e2e

package e2e

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/fakemirakl"
	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/vaulttest"
)

// Vault Proxy with the README's config (examples/proxy): an application that
// reads on every call makes one lease per Mirakl token, not one per read, and
// across several token lifetimes every token the proxy hands out is valid.
func TestProxyKeepsOneLeasePerToken(t *testing.T) { forEachServer(t, testProxyKeepsOneLeasePerToken) }

func testProxyKeepsOneLeasePerToken(t *testing.T, server vaulttest.Kind) {
	const expiresIn = 12 * time.Second
	e := newEnvFor(t, server, vaulttest.Options{})
	acme := e.newAccount("acme", fakemirakl.WithExpiresIn(int(expiresIn.Seconds())))
	e.mount("mirakl")
	root := e.root()
	e.configure("mirakl", acme)

	dir, tokenFile := e.readerTokenFile("proxy")
	proxyAddr := fmt.Sprintf("127.0.0.1:%d", vaulttest.FreePort(t))
	config := writeFile(t, filepath.Join(dir, "proxy.hcl"), replaceAll(t, readExample(t, "proxy/proxy.hcl"),
		"https://vault.example.com:8200", e.vault.Addr,
		"/etc/vault-proxy/vault-token", tokenFile,
		"127.0.0.1:8100", proxyAddr,
	))
	proxy := vaulttest.StartProxy(t, e.bins, config)
	e.extraLog = append(e.extraLog, proxy.LogPath)

	// The application's client: no Vault token of its own (the proxy forces its auto-auth token).
	app, err := api.NewClient(&api.Config{Address: "http://" + proxyAddr, Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	app.SetToken("")
	type handedOut struct {
		sent    time.Time
		token   string
		leaseID string
	}
	read := func() (handedOut, error) {
		sent := time.Now()
		secret, err := app.Logical().Read("mirakl/token")
		if err != nil {
			return handedOut{}, err
		}
		token, _ := secret.Data["access_token"].(string)
		return handedOut{sent: sent, token: token, leaseID: secret.LeaseID}, nil
	}
	eventually(t, 30*time.Second, "the proxy to answer", func() bool { _, err := read(); return err == nil })

	var reads []handedOut
	deadline := time.Now().Add(3*expiresIn + expiresIn/2)
	for time.Now().Before(deadline) {
		r, err := read()
		if err != nil {
			t.Fatalf("a read through the proxy failed: %v", err)
		}
		reads = append(reads, r)
		time.Sleep(100 * time.Millisecond)
	}

	tokens, leases := map[string]bool{}, map[string]bool{}
	for _, r := range reads {
		issuedBy(t, acme, r.token)
		issued, _ := acme.fake.IssuedAt(r.token)
		if expires := issued.Add(expiresIn); !r.sent.Before(expires) {
			t.Errorf("the proxy handed out a token %s after it expired", r.sent.Sub(expires))
		}
		tokens[r.token], leases[r.leaseID] = true, true
	}
	t.Logf("%d reads through the proxy over %s: %d tokens, %d leases", len(reads), 3*expiresIn+expiresIn/2, len(tokens), len(leases))
	if len(tokens) < 3 {
		t.Errorf("%d tokens over three and a half lifetimes: the proxy did not move on to new tokens", len(tokens))
	}
	if len(leases) > len(tokens)+1 {
		t.Errorf("%d leases for %d tokens: want one lease per token", len(leases), len(tokens))
	}

	// Vault's own count, from the server, of the leases still live.
	var live []string
	root.MustRunJSON(t, &live, "list", "-format=json", "sys/leases/lookup/mirakl/token")
	if len(live) > 2 {
		t.Errorf("%d live leases after %d reads through the proxy, want at most 2 (the current token's, and the previous one's at a rollover)", len(live), len(reads))
	}
	if proxy.Exited() {
		t.Errorf("the proxy exited: %v", proxy.ExitError())
	}
}
