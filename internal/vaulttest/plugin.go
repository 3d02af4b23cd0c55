package vaulttest

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// DefaultPluginName is the name the plugin is registered under, as in the README.
const DefaultPluginName = "mirakl"

// Plugin is the plugin binary as the catalog knows it.
type Plugin struct {
	Name    string // catalog name (DefaultPluginName)
	Command string // file name inside the plugin directory
	SHA256  string // hex
	Version string // such as v0.1.0
}

// installPlugin copies the plugin binary into dir (created if needed) and
// returns what to register.
func installPlugin(t testing.TB, env Env, dir string) Plugin {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("vaulttest: creating the plugin directory: %v", err)
	}
	command := filepath.Base(env.PluginBin)
	if err := copyFile(env.PluginBin, filepath.Join(dir, command), 0o755); err != nil {
		t.Fatalf("vaulttest: installing the plugin: %v", err)
	}
	return pluginIn(t, env, dir)
}

// pluginIn describes the plugin binary already in dir. The checksum is of
// that copy, not of PLUGIN_BIN, which a concurrent `make build` may replace.
func pluginIn(t testing.TB, env Env, dir string) Plugin {
	t.Helper()
	command := filepath.Base(env.PluginBin)
	sum, err := FileSHA256(filepath.Join(dir, command))
	if err != nil {
		t.Fatalf("vaulttest: the plugin directory %s has no %s: %v", dir, command, err)
	}
	return Plugin{Name: DefaultPluginName, Command: command, SHA256: sum, Version: env.PluginVersion}
}

// FileSHA256 is the hex sha256 of a file, as `sha256sum` prints it.
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// Plugin is the plugin installed in this server's plugin directory.
func (s *Server) Plugin() Plugin { return s.plugin }

// RegisterPlugin runs, as root,
//
//	vault plugin register -sha256=<sum> -version=<version> -command=<file> secret mirakl
func (s *Server) RegisterPlugin(t testing.TB) {
	t.Helper()
	p := s.plugin
	s.CLI().MustRun(t, "plugin", "register",
		"-sha256="+p.SHA256, "-version="+p.Version, "-command="+p.Command,
		"secret", p.Name)
}

// EnablePlugin runs, as root, `vault secrets enable -path=<path> mirakl`
// (Vault picks the registered version).
func (s *Server) EnablePlugin(t testing.TB, path string) {
	t.Helper()
	s.CLI().MustRun(t, "secrets", "enable", "-path="+path, s.plugin.Name)
}

// PluginPIDs returns the ids of this server's running plugin processes: its
// children whose command is the plugin binary. (Vault runs one process per
// plugin version, shared by every mount of it.)
func (s *Server) PluginPIDs(t testing.TB) []int {
	t.Helper()
	pids, err := ChildProcesses(s.Process().PID(), s.plugin.Command)
	if err != nil {
		t.Fatalf("vaulttest: %v", err)
	}
	return pids
}
