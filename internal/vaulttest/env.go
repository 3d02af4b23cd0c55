// Package vaulttest runs real Vault or OpenBao processes (servers, the CLI,
// Agent and Proxy) on loopback for end-to-end tests and benchmarks of the
// plugin. Which server is the Env's Kind: the same helpers start `vault` or
// `bao`.
//
// Everything it starts is tied to the test that started it: processes run in
// their own process group (on unix) and are stopped, then killed, on
// t.Cleanup, even when the test fails; logs go to files under t.TempDir and
// their tail is printed when the test failed. It never skips: a missing binary
// fails the test with the command that provides it (OpenBaoAvailable tells a
// caller whether to skip the OpenBao tests on a machine without bao).
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
	"testing"
)

// The environment variables the harness reads. `make test-e2e` sets the first
// three, and BAO_BIN (kind.go) when it finds OpenBao.
const (
	envVaultBin      = "VAULT_BIN"
	envPluginBin     = "PLUGIN_BIN"
	envPluginVersion = "PLUGIN_VERSION"
	// envLogDir, when set, is a directory where every process log is copied
	// at the end of its test (for CI artifacts).
	envLogDir = "VAULTTEST_LOG_DIR"
)

// Env is what the harness needs from outside: a server binary, of Vault or
// of OpenBao, and the plugin binary with its version.
type Env struct {
	Kind          Kind   // the server: Vault or OpenBao
	ServerBin     string // absolute path of its binary: vault, or bao
	PluginBin     string // absolute path of the plugin binary (built by make build)
	PluginVersion string // the version the plugin reports, such as v0.1.0
}

const howToRun = "run the end-to-end tests with `make test-e2e`, which builds the plugin and finds or builds Vault; " +
	"or set VAULT_BIN=$(scripts/vault-bin.sh) PLUGIN_BIN=$PWD/bin/vault-plugin-mirakl PLUGIN_VERSION=$(cat VERSION) after `make build`"

// RequireEnv reads VAULT_BIN, PLUGIN_BIN and PLUGIN_VERSION and fails the
// test (never skips it) when one is missing or does not point at an
// executable. It is RequireEnvFor(t, Vault).
func RequireEnv(t testing.TB) Env {
	t.Helper()
	return RequireEnvFor(t, Vault)
}

// RequireEnvFor is the Env for a server of kind: Vault's binary from
// VAULT_BIN, OpenBao's from BAO_BIN or else bao on PATH, and the plugin from
// PLUGIN_BIN and PLUGIN_VERSION. It fails the test (never skips it) when one
// is missing or does not point at an executable.
func RequireEnvFor(t testing.TB, kind Kind) Env {
	t.Helper()
	env := Env{
		Kind:          kind,
		PluginBin:     os.Getenv(envPluginBin),
		PluginVersion: os.Getenv(envPluginVersion),
	}
	switch kind {
	case Vault:
		env.ServerBin = os.Getenv(envVaultBin)
		if env.ServerBin == "" {
			t.Fatalf("vaulttest: %s is not set: %s", envVaultBin, howToRun)
		}
	case OpenBao:
		bin, err := openBaoBin()
		switch {
		case err != nil:
			t.Fatalf("vaulttest: %v", err)
		case bin == "":
			t.Fatalf("vaulttest: %s", HowToRunOpenBao)
		}
		env.ServerBin = bin
	default:
		t.Fatalf("vaulttest: unknown server %v", kind)
	}
	for _, v := range []struct{ name, value string }{
		{envPluginBin, env.PluginBin},
		{envPluginVersion, env.PluginVersion},
	} {
		if v.value == "" {
			t.Fatalf("vaulttest: %s is not set: %s", v.name, howToRun)
		}
	}
	for _, p := range []struct {
		name string
		path *string
	}{{kind.Command(), &env.ServerBin}, {envPluginBin, &env.PluginBin}} {
		abs, err := executable(p.name, *p.path)
		if err != nil {
			t.Fatalf("vaulttest: %v: %s", err, howToRun)
		}
		*p.path = abs
	}
	return env
}
