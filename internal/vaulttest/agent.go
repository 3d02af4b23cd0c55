package vaulttest

import (
	"path/filepath"
	"testing"
)

// StartAgent runs `vault agent -config=<configPath>` with its log, agent.log,
// in the config's directory. The config names the server's address itself
// (vault stanza); the agent gets no VAULT_* variable from the test.
func StartAgent(t testing.TB, env Env, configPath string) *Process {
	t.Helper()
	dir := filepath.Dir(configPath)
	return startProcess(t, t, "vault agent", filepath.Join(dir, "agent.log"), append(cleanEnv(), "HOME="+dir),
		env.VaultBin, "agent", "-config="+configPath, "-log-level=debug")
}
