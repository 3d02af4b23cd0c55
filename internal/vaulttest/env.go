// Package vaulttest runs real Vault processes (servers, the CLI, Vault Agent)
// on loopback for end-to-end tests and benchmarks of the plugin.
//
// Everything it starts is tied to the test that started it: processes run in
// their own process group (on unix) and are stopped, then killed, on
// t.Cleanup, even when the test fails; logs go to files under t.TempDir and
// their tail is printed when the test failed. It never skips: a missing binary
// fails the test with the command that provides it.
//
// A session reads like the commands a user types:
//
//	env := vaulttest.RequireEnv(t)
//	srv := vaulttest.Start(t, env, vaulttest.Options{})
//	srv.RegisterPlugin(t)
//	srv.EnablePlugin(t, "mirakl")
//	srv.CLI().MustRun(t, "write", "mirakl/config", "client_id=...", ...)
//
// A server on file storage is started with Start, then Init; Restart keeps
// its ports, storage and unseal key. StartCluster starts nodes on raft.
package vaulttest

import (
	"os"
	"path/filepath"
	"testing"
)

// The environment variables the harness reads. `make test-e2e` sets the first three.
const (
	envVaultBin      = "VAULT_BIN"
	envPluginBin     = "PLUGIN_BIN"
	envPluginVersion = "PLUGIN_VERSION"
	// envLogDir, when set, is a directory where every process log is copied
	// at the end of its test (for CI artifacts).
	envLogDir = "VAULTTEST_LOG_DIR"
)

// Env is what the harness needs from outside: a vault binary and the plugin
// binary with its version.
type Env struct {
	VaultBin      string // absolute path of the vault binary
	PluginBin     string // absolute path of the plugin binary (built by make build)
	PluginVersion string // the version the plugin reports, such as v0.1.0
}

const howToRun = "run the end-to-end tests with `make test-e2e`, which builds the plugin and finds or builds Vault; " +
	"or set VAULT_BIN=$(scripts/vault-bin.sh) PLUGIN_BIN=$PWD/bin/vault-plugin-mirakl PLUGIN_VERSION=$(cat VERSION) after `make build`"

// RequireEnv reads VAULT_BIN, PLUGIN_BIN and PLUGIN_VERSION and fails the
// test (never skips it) when one is missing or does not point at an
// executable.
func RequireEnv(t testing.TB) Env {
	t.Helper()
	env := Env{
		VaultBin:      os.Getenv(envVaultBin),
		PluginBin:     os.Getenv(envPluginBin),
		PluginVersion: os.Getenv(envPluginVersion),
	}
	for _, v := range []struct{ name, value string }{
		{envVaultBin, env.VaultBin},
		{envPluginBin, env.PluginBin},
		{envPluginVersion, env.PluginVersion},
	} {
		if v.value == "" {
			t.Fatalf("vaulttest: %s is not set: %s", v.name, howToRun)
		}
	}
	for _, p := range []*string{&env.VaultBin, &env.PluginBin} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			t.Fatalf("vaulttest: %s: %v", *p, err)
		}
		info, err := os.Stat(abs)
		if err != nil || info.IsDir() || info.Mode()&0o111 == 0 {
			t.Fatalf("vaulttest: %s is not an executable file (%v): %s", abs, err, howToRun)
		}
		*p = abs
	}
	return env
}
