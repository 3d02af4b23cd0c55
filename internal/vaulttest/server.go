package vaulttest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
)

// Storage is the storage backend of a server.
type Storage int

const (
	// StorageDev is `vault server -dev` (or `bao server -dev`): in memory,
	// unsealed, root token known.
	StorageDev Storage = iota
	// StorageFile is a non-dev server on the file backend; Init it.
	StorageFile
	// storageRaft is a node of a Cluster, on integrated storage (raft).
	storageRaft
)

// String is the storage's name, for messages.
func (s Storage) String() string {
	switch s {
	case StorageDev:
		return "dev"
	case StorageFile:
		return "file"
	case storageRaft:
		return "raft"
	}
	return "storage(" + strconv.Itoa(int(s)) + ")"
}

// devRootToken is the root token of dev servers.
const devRootToken = "vaulttest-root"

// readyTimeout bounds how long a server may take to listen, or to become active.
const readyTimeout = 90 * time.Second

// Options is how to run a server. The zero value is a dev server on a free
// port with the plugin installed in a fresh plugin directory.
type Options struct {
	// Storage is the storage backend (default StorageDev).
	Storage Storage
	// Name tells servers of one test apart in messages and file names
	// (default the binary's name, "vault" or "bao"; a cluster's are "node1",
	// "node2", ...).
	Name string
	// Dir holds the config, storage, plugin directory and logs (default: a
	// new t.TempDir()).
	Dir string
	// LogLevel is the server's log level (default "debug", so that a leak
	// shows up).
	LogLevel string
	// AuditLog, when set, is the file of a file audit device at file/. Vault
	// gets it through `vault audit enable` as soon as it is active (by Start
	// for a dev server, by Init otherwise). OpenBao 2.x refuses that through
	// the API by default ("cannot enable audit device via API; use
	// declarative, config-based audit device management instead"), so a bao
	// server gets it from an audit stanza in its config file, which a dev
	// server reads beside its dev flags.
	AuditLog string

	// What StartCluster sets for its nodes: the API and cluster ports on
	// 127.0.0.1 (0: free ports); the plugin directory, which must hold the
	// plugin ("": Dir/plugins, with a copy of the plugin binary); and the API
	// addresses (http://127.0.0.1:port) of the nodes to join.
	port, clusterPort int
	pluginDir         string
	retryJoin         []string
}

// Server is one running (or stopped) Vault or OpenBao server process.
type Server struct {
	// Opts are the options it runs with, defaults filled in.
	Opts Options
	// Addr is the API address, http://127.0.0.1:<port>.
	Addr string
	// PluginDir and LogPath are where its plugins and its log live.
	PluginDir, LogPath string

	env        Env
	configPath string // of a non-dev server, or of a bao dev server's audit stanza
	// owner is the test that created the server: its processes live until
	// that test ends, whichever subtest restarts them.
	owner testing.TB

	mu         sync.Mutex
	proc       *Process
	rootToken  string
	keys       []string // unseal keys
	plugin     Plugin
	transcript []*Result
}

// Start starts a server of env.Kind. A dev server is ready on return (with
// its audit device); a file server is listening but, the first time,
// uninitialised: call Init.
func Start(t testing.TB, env Env, opts Options) *Server {
	t.Helper()
	s := newServer(t, env, opts)
	s.start(t)
	if opts.Storage == StorageDev {
		s.WaitActive(t)
		s.enableAuditByAPI(t)
	}
	return s
}

func newServer(t testing.TB, env Env, opts Options) *Server {
	t.Helper()
	if opts.Name == "" {
		opts.Name = env.Kind.Command()
	}
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	if opts.LogLevel == "" {
		opts.LogLevel = "debug"
	}
	if opts.port == 0 {
		opts.port = FreePort(t)
	}
	if opts.clusterPort == 0 {
		if opts.Storage == StorageDev {
			// The dev server takes the next port up (freePort keeps it free).
			opts.clusterPort = opts.port + 1
		} else {
			opts.clusterPort = FreePort(t)
		}
	}
	s := &Server{
		owner:   t,
		env:     env,
		Opts:    opts,
		Addr:    fmt.Sprintf("http://127.0.0.1:%d", opts.port),
		LogPath: filepath.Join(opts.Dir, opts.Name+".log"),
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		t.Fatalf("vaulttest: %v", err)
	}
	s.PluginDir = opts.pluginDir
	if s.PluginDir == "" {
		s.PluginDir = filepath.Join(opts.Dir, "plugins")
		s.plugin = installPlugin(t, env, s.PluginDir)
	} else {
		s.plugin = pluginIn(t, env, s.PluginDir)
	}
	var config string
	if opts.Storage != StorageDev {
		config = s.configHCL()
	} else {
		s.rootToken = devRootToken
		config = s.auditHCL()
	}
	if config != "" {
		s.configPath = filepath.Join(opts.Dir, opts.Name+".hcl")
		if err := os.WriteFile(s.configPath, []byte(config), 0o600); err != nil {
			t.Fatalf("vaulttest: writing the server config: %v", err)
		}
	}
	return s
}

// auditHCL is the audit stanza of a bao server's config file: how OpenBao
// gets the file audit device of Options.AuditLog ("" for Vault, which gets
// it through the API, and when there is none).
func (s *Server) auditHCL() string {
	if s.env.Kind != OpenBao || s.Opts.AuditLog == "" {
		return ""
	}
	return fmt.Sprintf("audit \"file\" \"file\" {\n  options {\n    file_path = %q\n  }\n}\n", s.Opts.AuditLog)
}

// enableAuditByAPI enables the file audit device of Options.AuditLog on an
// active Vault server as a user would, with `vault audit enable`. OpenBao's
// comes from its config file (auditHCL).
func (s *Server) enableAuditByAPI(t testing.TB) {
	t.Helper()
	if s.env.Kind != Vault || s.Opts.AuditLog == "" {
		return
	}
	s.CLI().MustRun(t, "audit", "enable", "file", "file_path="+s.Opts.AuditLog)
}

// configHCL is a non-dev server's config file.
func (s *Server) configHCL() string {
	o := s.Opts
	var b strings.Builder
	if s.env.Kind == Vault {
		// OpenBao 2.x has no mlock, and warns about the field.
		b.WriteString("disable_mlock = true\n")
	}
	b.WriteString("ui = false\n")
	fmt.Fprintf(&b, "api_addr = %q\ncluster_addr = %q\n", s.Addr, fmt.Sprintf("https://127.0.0.1:%d", o.clusterPort))
	fmt.Fprintf(&b, "plugin_directory = %q\n", s.PluginDir)
	fmt.Fprintf(&b, "listener \"tcp\" {\n  address = %q\n  cluster_address = %q\n  tls_disable = true\n}\n",
		fmt.Sprintf("127.0.0.1:%d", o.port), fmt.Sprintf("127.0.0.1:%d", o.clusterPort))
	switch o.Storage {
	case StorageFile:
		fmt.Fprintf(&b, "storage \"file\" {\n  path = %q\n}\n", filepath.Join(o.Dir, "data"))
	case storageRaft:
		// performance_multiplier = 1: elections in seconds, not tens of seconds.
		fmt.Fprintf(&b, "storage \"raft\" {\n  path = %q\n  node_id = %q\n  performance_multiplier = 1\n", filepath.Join(o.Dir, "raft"), o.Name)
		for _, leader := range o.retryJoin {
			fmt.Fprintf(&b, "  retry_join {\n    leader_api_addr = %q\n  }\n", leader)
		}
		b.WriteString("}\n")
	}
	b.WriteString(s.auditHCL())
	return b.String()
}

func (s *Server) start(t testing.TB) {
	t.Helper()
	if s.Opts.Storage == storageRaft {
		if err := os.MkdirAll(filepath.Join(s.Opts.Dir, "raft"), 0o700); err != nil {
			t.Fatalf("vaulttest: %v", err)
		}
	}
	var args []string
	if s.Opts.Storage == StorageDev {
		args = []string{"server", "-dev",
			"-dev-root-token-id=" + devRootToken,
			fmt.Sprintf("-dev-listen-address=127.0.0.1:%d", s.Opts.port),
			"-dev-plugin-dir=" + s.PluginDir,
			"-dev-no-store-token",
		}
		if s.configPath != "" {
			// The dev flags and a config file combine: bao reads its audit
			// stanza there.
			args = append(args, "-config="+s.configPath)
		}
	} else {
		args = []string{"server", "-config=" + s.configPath}
	}
	args = append(args, "-log-level="+s.Opts.LogLevel)
	// The dev server would otherwise advertise itself to a developer's shell
	// through ~/.vault-token; keep HOME inside the test.
	env := append(cleanEnv(), "HOME="+s.Opts.Dir)
	p := startProcess(t, s.owner, s.env.Kind.Command()+" server "+s.Opts.Name, s.LogPath, env, s.env.ServerBin, args...)
	s.mu.Lock()
	s.proc = p
	s.mu.Unlock()
	s.waitListening(t)
}

// Kind is the server this is: Vault or OpenBao.
func (s *Server) Kind() Kind { return s.env.Kind }

// Process is the current server process.
func (s *Server) Process() *Process {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc
}

// RootToken is the dev root token, or the one Init received.
func (s *Server) RootToken() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rootToken
}

// unsealKeys are the keys Init received (nil for a dev server).
func (s *Server) unsealKeys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.keys...)
}

// setCredentials keeps the root token and unseal keys that Init received, on
// this server or, for a node that joins a cluster, on the first node.
func (s *Server) setCredentials(rootToken string, keys []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rootToken, s.keys = rootToken, append([]string(nil), keys...)
}

// Client is an API client with the root token.
func (s *Server) Client(t testing.TB) *api.Client {
	t.Helper()
	return s.ClientWithToken(t, s.RootToken())
}

// ClientWithToken is an API client with the given token ("" for none).
func (s *Server) ClientWithToken(t testing.TB, token string) *api.Client {
	t.Helper()
	c, err := newAPIClient(s.Addr, token, 60*time.Second)
	if err != nil {
		t.Fatalf("vaulttest: api client: %v", err)
	}
	return c
}

// newAPIClient is a client of addr with token ("" for none), without retries.
func newAPIClient(addr, token string, timeout time.Duration) (*api.Client, error) {
	cfg := api.DefaultConfig()
	cfg.Address = addr
	cfg.MaxRetries = 0
	cfg.Timeout = timeout
	c, err := api.NewClient(cfg)
	if err != nil {
		return nil, err
	}
	// NewClient reads VAULT_TOKEN from the environment; never use it.
	c.ClearToken()
	if token != "" {
		c.SetToken(token)
	}
	return c, nil
}

// waitListening waits until the API answers at all (sealed or not).
func (s *Server) waitListening(t testing.TB) {
	t.Helper()
	c := s.ClientWithToken(t, "")
	s.poll(t, "to listen on "+s.Addr, func() error {
		_, err := c.Sys().SealStatus()
		return err
	})
}

// WaitActive waits until the server is unsealed and the active node.
func (s *Server) WaitActive(t testing.TB) {
	t.Helper()
	s.waitHealth(t, "to become active", true)
}

// waitHealth waits until the server is unsealed and, if active, the active
// node rather than a standby.
func (s *Server) waitHealth(t testing.TB, what string, active bool) {
	t.Helper()
	c := s.ClientWithToken(t, "")
	s.poll(t, what, func() error {
		h, err := c.Sys().Health()
		switch {
		case err != nil:
			return err
		case active && !h.Initialized:
			return errors.New("not initialised")
		case h.Sealed:
			return errors.New("sealed")
		case active && h.Standby:
			return errors.New("standby")
		}
		return nil
	})
}

// poll retries check until it succeeds, the process dies or readyTimeout passes.
func (s *Server) poll(t testing.TB, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(readyTimeout)
	var err error
	for {
		if err = check(); err == nil {
			return
		}
		if p := s.Process(); p != nil && p.Exited() {
			t.Fatalf("vaulttest: %s exited (%v) while waiting for it %s; log %s:\n%s",
				p.name, p.ExitError(), what, s.LogPath, tailFile(s.LogPath, 40))
		}
		if time.Now().After(deadline) {
			t.Fatalf("vaulttest: %s did not manage %s in %s: %v", s.Opts.Name, what, readyTimeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Init initialises a non-dev server with one unseal key, keeps the root token
// and key, unseals it and enables its audit device (Options.AuditLog).
func (s *Server) Init(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	resp, err := s.ClientWithToken(t, "").Sys().InitWithContext(ctx, &api.InitRequest{SecretShares: 1, SecretThreshold: 1})
	if err != nil {
		t.Fatalf("vaulttest: initialising %s: %v", s.Opts.Name, err)
	}
	s.setCredentials(resp.RootToken, resp.Keys)
	s.unseal(t)
	s.WaitActive(t)
	s.enableAuditByAPI(t)
}

// unseal submits the unseal keys and waits until the server is unsealed
// (active or standby).
func (s *Server) unseal(t testing.TB) {
	t.Helper()
	keys := s.unsealKeys()
	if len(keys) == 0 {
		t.Fatalf("vaulttest: no unseal keys for %s: Init it first", s.Opts.Name)
	}
	c := s.ClientWithToken(t, "")
	// A node that is joining a raft cluster refuses keys until it has the
	// cluster's seal configuration, hence the retries.
	s.poll(t, "to accept the unseal key", func() error {
		var status *api.SealStatusResponse
		var err error
		for _, k := range keys {
			if status, err = c.Sys().Unseal(k); err != nil {
				return err
			}
		}
		if status != nil && status.Sealed {
			return errors.New("still sealed")
		}
		return nil
	})
	s.waitHealth(t, "to unseal", false)
}

// Kill kills the server and its plugins with SIGKILL, as a crash would.
func (s *Server) Kill(t testing.TB) {
	t.Helper()
	s.Process().kill()
}

// Restart stops the server gracefully (SIGTERM, then SIGKILL after a grace
// period) and starts it again with the same ports, storage and plugin
// directory; a non-dev server that was initialised is unsealed on return.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Process().stop()
	s.startAgain(t)
}

// startAgain starts a stopped or killed server; see Restart.
func (s *Server) startAgain(t testing.TB) {
	t.Helper()
	if p := s.Process(); p != nil && !p.Exited() {
		t.Fatalf("vaulttest: %s is still running", s.Opts.Name)
	}
	s.start(t)
	switch {
	case s.Opts.Storage == StorageDev:
		// In memory: everything, the audit device too, starts afresh.
		s.WaitActive(t)
		s.enableAuditByAPI(t)
	case len(s.unsealKeys()) > 0:
		s.unseal(t)
	}
}
