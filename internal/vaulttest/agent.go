package vaulttest

import (
	"path/filepath"
	"testing"
)

// Agent is a running `vault agent`.
type Agent struct {
	*Process
	ConfigPath string
}

// StartAgent runs `vault agent -config=<configPath>` with its log in the
// config's directory. The config names the server's address itself (vault
// stanza); the agent gets no VAULT_* variable from the test.
func StartAgent(t testing.TB, env Env, configPath string) *Agent {
	t.Helper()
	dir := filepath.Dir(configPath)
	logPath := filepath.Join(dir, "agent.log")
	p := StartProcess(t, "vault agent", logPath, append(cleanEnv(), "HOME="+dir),
		env.VaultBin, "agent", "-config="+configPath, "-log-level=debug")
	return &Agent{Process: p, ConfigPath: configPath}
}
