//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/fakemirakl"
	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/vaulttest"
)

// Vault Agent with the README's config and template keeps a current token on
// disk: with tokens that live 30s it renders a new one before the old expires.
func TestAgentRendersFreshTokens(t *testing.T) { forEachServer(t, testAgentRendersFreshTokens) }

func testAgentRendersFreshTokens(t *testing.T, server vaulttest.Kind) {
	const expiresIn = 30 * time.Second
	e := newEnvFor(t, server, vaulttest.Options{})
	acme := e.newAccount("acme", fakemirakl.WithExpiresIn(int(expiresIn.Seconds())))
	e.mount("mirakl")

	e.configure("mirakl", acme)

	dir, tokenFile := e.readerTokenFile("agent")
	template := writeFile(t, filepath.Join(dir, "mirakl-token.tpl"), readExample(t, "agent/mirakl-token.tpl"))
	rendered := filepath.Join(dir, "mirakl-token")
	config := writeFile(t, filepath.Join(dir, "agent.hcl"), replaceAll(t, readExample(t, "agent/agent.hcl"),
		"https://vault.example.com:8200", e.vault.Addr,
		"/etc/vault-agent/vault-token", tokenFile,
		"/etc/vault-agent/mirakl-token.tpl", template,
		"/run/secrets/mirakl-token", rendered,
	))
	agent := vaulttest.StartAgent(t, e.bins, config)
	e.extraLog = append(e.extraLog, agent.LogPath)
	for _, token := range rendersFreshTokens(t, acme, rendered, expiresIn) {
		issuedBy(t, acme, token)
	}
	if agent.Exited() {
		t.Errorf("the agent exited: %v", agent.ExitError())
	}
}

// rendersFreshTokens waits for an Agent to render a token of a's fake
// (living expiresIn) into rendered, then for a second one, and fails the
// test unless the second landed before the first expired. It returns both.
func rendersFreshTokens(t *testing.T, a *account, rendered string, expiresIn time.Duration) []string {
	t.Helper()
	readRendered := func() string {
		data, _ := os.ReadFile(rendered)
		return strings.TrimSpace(string(data))
	}
	var first string
	eventually(t, 30*time.Second, "the agent to render a token", func() bool {
		first = readRendered()
		return first != ""
	})
	issuedBy(t, a, first)
	if info, err := os.Stat(rendered); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("rendered file mode: %v %v, want 0600 (perms in agent.hcl)", info.Mode(), err)
	}

	// Against what the fake recorded when it issued the token, not against
	// when this test looked: a busy machine cannot move it.
	firstIssued, _ := a.fake.IssuedAt(first)
	firstExpires := firstIssued.Add(expiresIn)
	var second string
	eventually(t, 2*expiresIn, "the agent to render a second token", func() bool {
		second = readRendered()
		return second != "" && second != first
	})
	info, err := os.Stat(rendered)
	if err != nil {
		t.Fatal(err)
	}
	if renderedAt := info.ModTime(); !renderedAt.Before(firstExpires) {
		t.Errorf("the second token was rendered %s after the first one expired", renderedAt.Sub(firstExpires))
	} else {
		t.Logf("the second token was rendered at least %s before the first one expired", firstExpires.Sub(renderedAt).Round(time.Millisecond))
	}
	return []string{first, second}
}
