package vaulttest

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

// What the OCI test (OpenBao's declarative plugins) needs beyond Start and
// Restart: a non-dev server whose config file carries more stanzas (plugin
// blocks, plugin_auto_download, plugin_auto_register), which a test changes
// between restarts, and a start that must fail.

// StartWithConfig is Start for a server on file storage (opts.Storage must
// be StorageFile) whose config file ends with extra, such as plugin blocks:
// a dev server does not download OCI plugins (OpenBao reads
// plugin_directory from the config file for that). Init it next.
func StartWithConfig(t testing.TB, env Env, opts Options, extra string) *Server {
	t.Helper()
	if opts.Storage != StorageFile {
		t.Fatalf("vaulttest: StartWithConfig wants StorageFile, not %s", opts.Storage)
	}
	s := newServer(t, env, opts)
	s.SetExtraConfig(t, extra)
	s.start(t)
	return s
}

// SetExtraConfig rewrites the server's config file with extra at its end in
// place of what was there; the next Restart reads it.
func (s *Server) SetExtraConfig(t testing.TB, extra string) {
	t.Helper()
	if s.configPath == "" || s.Opts.Storage == StorageDev {
		t.Fatalf("vaulttest: %s is a dev server: no config file to extend", s.Opts.Name)
	}
	if err := os.WriteFile(s.configPath, []byte(s.configHCL()+extra), 0o600); err != nil {
		t.Fatalf("vaulttest: writing the server config: %v", err)
	}
}

// RestartMustFail stops the server and starts it again, expecting the new
// process to exit with an error of its own within timeout (a config it
// refuses, a plugin it cannot install). It returns what the process logged;
// the test fails if it is still running at the deadline.
func (s *Server) RestartMustFail(t testing.TB, timeout time.Duration) string {
	t.Helper()
	s.Process().stop()
	before := int64(0)
	if info, err := os.Stat(s.LogPath); err == nil {
		before = info.Size()
	}
	args := []string{"server", "-config=" + s.configPath, "-log-level=" + s.Opts.LogLevel}
	env := append(cleanEnv(), "HOME="+s.Opts.Dir)
	p := startProcess(t, s.owner, s.env.Kind.Command()+" server "+s.Opts.Name, s.LogPath, env, s.env.ServerBin, args...)
	s.mu.Lock()
	s.proc = p
	s.mu.Unlock()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("vaulttest: %s still runs %s after a start that should have failed; log %s:\n%s",
			s.Opts.Name, timeout, s.LogPath, tailFile(s.LogPath, 40))
	}
	var exit interface{ ExitCode() int }
	if err := p.ExitError(); err == nil || !errors.As(err, &exit) || exit.ExitCode() == 0 {
		t.Fatalf("vaulttest: %s exited with %v, want an error exit; log %s:\n%s", s.Opts.Name, err, s.LogPath, tailFile(s.LogPath, 40))
	}
	data, err := os.ReadFile(s.LogPath)
	if err != nil {
		t.Fatalf("vaulttest: %v", err)
	}
	if int64(len(data)) < before {
		before = 0
	}
	return strings.TrimSpace(string(data[before:]))
}
