package vaulttest

import (
	"path/filepath"
	"testing"
)

// StartAgent runs `vault agent -config=<configPath>` (`bao agent` for
// OpenBao) with its log, agent.log, in the config's directory. The config
// names the server's address itself (vault stanza, which bao reads too); the
// agent gets no VAULT_* or BAO_* variable from the test.
func StartAgent(t testing.TB, env Env, configPath string) *Process {
	t.Helper()
	return startClientDaemon(t, env, "agent", configPath)
}

// StartProxy runs `vault proxy -config=<configPath>` as StartAgent runs the
// agent, with its log in proxy.log.
func StartProxy(t testing.TB, env Env, configPath string) *Process {
	t.Helper()
	return startClientDaemon(t, env, "proxy", configPath)
}

func startClientDaemon(t testing.TB, env Env, command, configPath string) *Process {
	t.Helper()
	dir := filepath.Dir(configPath)
	return startProcess(t, t, env.Kind.Command()+" "+command, filepath.Join(dir, command+".log"), append(cleanEnv(), "HOME="+dir),
		env.ServerBin, command, "-config="+configPath, "-log-level=debug")
}
