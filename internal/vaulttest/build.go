package vaulttest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The plugin's main package and the variable its version is stamped into, as
// the Makefile names them.
const (
	pluginPackage = "github.com/vault-plugin-mirakl/vault-plugin-mirakl/cmd/vault-plugin-mirakl"
	versionVar    = "github.com/vault-plugin-mirakl/vault-plugin-mirakl.Version"
)

// BuildPlugin builds the plugin from this checkout as `make build` does, but
// stamped with version, into this server's plugin directory under the file
// name vault-plugin-mirakl-<version>: a second release beside the first, as
// the README's upgrade installs one. It returns what to register; nothing is
// registered yet. A cluster's nodes share their plugin directory, so one
// build serves them all.
func (s *Server) BuildPlugin(t testing.TB, version string) Plugin {
	t.Helper()
	base := filepath.Base(s.env.PluginBin)
	ext := filepath.Ext(base) // .exe on Windows
	command := strings.TrimSuffix(base, ext) + "-" + version + ext
	out := filepath.Join(s.PluginDir, command)
	// The package by import path: the test's working directory lies inside
	// the module, whichever package the test belongs to.
	cmd := exec.Command("go", "build", "-trimpath",
		"-ldflags", "-s -w -X "+versionVar+"="+version,
		"-o", out, pluginPackage)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if output, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("vaulttest: building the plugin as %s: %v\n%s", version, err, output)
	}
	sum, err := FileSHA256(out)
	if err != nil {
		t.Fatalf("vaulttest: %v", err)
	}
	return Plugin{Name: DefaultPluginName, Command: command, SHA256: sum, Version: version}
}
