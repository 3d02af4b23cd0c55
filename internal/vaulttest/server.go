package vaulttest

import (
	"context"
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
	// StorageDev is `vault server -dev`: in memory, unsealed, root token known.
	StorageDev Storage = iota
	// StorageFile is a non-dev server on the file backend; Init and Unseal it.
	StorageFile
	// StorageRaft is a non-dev server on integrated storage (raft); Init and
	// Unseal it, or join it to another node with Options.RetryJoin.
	StorageRaft
)

func (s Storage) String() string {
	switch s {
	case StorageDev:
		return "dev"
	case StorageFile:
		return "file"
	case StorageRaft:
		return "raft"
	}
	return "storage(" + strconv.Itoa(int(s)) + ")"
}

// DevRootToken is the root token of dev servers unless Options.RootToken says otherwise.
const DevRootToken = "vaulttest-root"

// readyTimeout bounds how long a server may take to listen, or to become active.
const readyTimeout = 90 * time.Second

// Options shape a server. The zero value is a dev server on a free port with
// the plugin installed in a fresh plugin directory.
type Options struct {
	Storage Storage

	// Name tells servers of one test apart in messages and file names
	// (default "vault"; a cluster might use "node1", "node2", ...).
	Name string
	// Dir holds the config, storage, plugin directory and logs (default: a
	// new t.TempDir()).
	Dir string
	// Port and ClusterPort are the API and cluster ports on 127.0.0.1
	// (0: free ports).
	Port, ClusterPort int
	// PluginDir is the plugin directory (default: Dir/plugins, holding a copy
	// of the plugin binary). A directory given here is used as is; it must
	// hold the plugin (see InstallPlugin), which servers of a cluster share.
	PluginDir string
	// LogLevel of the server (default "debug", so that a leak shows up).
	LogLevel string
	// RootToken of a dev server (default DevRootToken).
	RootToken string

	// NodeID and RetryJoin are for raft: the node's id (default Name) and the
	// API addresses (http://127.0.0.1:port) of nodes to join.
	NodeID    string
	RetryJoin []string
	// ExtraConfig is HCL appended to a non-dev server's config file.
	ExtraConfig string
	// Env is added to the server's environment.
	Env []string
}

// Server is one running (or stopped) Vault server process.
type Server struct {
	Env  Env
	Opts Options

	// Addr is the API address, http://127.0.0.1:<port>.
	Addr string
	// Dir, PluginDir, ConfigPath and LogPath are where its files live.
	Dir, PluginDir, ConfigPath, LogPath string

	// owner is the test that created the server: its processes live until
	// that test ends, whichever subtest restarts them.
	owner testing.TB

	mu         sync.Mutex
	proc       *Process
	rootToken  string
	unsealKeys []string
	plugin     Plugin
	transcript []*Result
}

// StartDev starts `vault server -dev` with the plugin directory and waits
// until it is unsealed and active. opts.Storage must be StorageDev.
func StartDev(t testing.TB, env Env, opts Options) *Server {
	t.Helper()
	if opts.Storage != StorageDev {
		t.Fatalf("vaulttest: StartDev with %s storage; use Start", opts.Storage)
	}
	s := newServer(t, env, opts)
	s.start(t)
	s.WaitActive(t)
	return s
}

// Start starts a server. A dev server is ready on return; a file or raft
// server is listening but, the first time, uninitialised: call Init (or join
// it to a cluster) and Unseal.
func Start(t testing.TB, env Env, opts Options) *Server {
	t.Helper()
	s := newServer(t, env, opts)
	s.start(t)
	if opts.Storage == StorageDev {
		s.WaitActive(t)
	}
	return s
}

func newServer(t testing.TB, env Env, opts Options) *Server {
	t.Helper()
	if opts.Name == "" {
		opts.Name = "vault"
	}
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	if opts.LogLevel == "" {
		opts.LogLevel = "debug"
	}
	if opts.RootToken == "" {
		opts.RootToken = DevRootToken
	}
	if opts.NodeID == "" {
		opts.NodeID = opts.Name
	}
	if opts.Port == 0 {
		opts.Port = FreePort(t)
	}
	if opts.ClusterPort == 0 {
		if opts.Storage == StorageDev {
			// The dev server takes the next port up (FreePort keeps it free).
			opts.ClusterPort = opts.Port + 1
		} else {
			opts.ClusterPort = FreePort(t)
		}
	}
	s := &Server{
		owner:   t,
		Env:     env,
		Opts:    opts,
		Addr:    fmt.Sprintf("http://127.0.0.1:%d", opts.Port),
		Dir:     opts.Dir,
		LogPath: filepath.Join(opts.Dir, opts.Name+".log"),
	}
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		t.Fatalf("vaulttest: %v", err)
	}
	s.PluginDir = opts.PluginDir
	if s.PluginDir == "" {
		s.PluginDir = filepath.Join(s.Dir, "plugins")
		s.plugin = InstallPlugin(t, env, s.PluginDir)
	} else {
		s.plugin = pluginIn(t, env, s.PluginDir)
	}
	if opts.Storage != StorageDev {
		s.ConfigPath = filepath.Join(s.Dir, opts.Name+".hcl")
		if err := os.WriteFile(s.ConfigPath, []byte(s.configHCL()), 0o600); err != nil {
			t.Fatalf("vaulttest: writing the server config: %v", err)
		}
	} else {
		s.rootToken = opts.RootToken
	}
	return s
}

// configHCL is a non-dev server's config file.
func (s *Server) configHCL() string {
	o := s.Opts
	var b strings.Builder
	fmt.Fprintf(&b, "disable_mlock = true\nui = false\n")
	fmt.Fprintf(&b, "api_addr = %q\ncluster_addr = %q\n", s.Addr, fmt.Sprintf("https://127.0.0.1:%d", o.ClusterPort))
	fmt.Fprintf(&b, "plugin_directory = %q\n", s.PluginDir)
	fmt.Fprintf(&b, "listener \"tcp\" {\n  address = %q\n  cluster_address = %q\n  tls_disable = true\n}\n",
		fmt.Sprintf("127.0.0.1:%d", o.Port), fmt.Sprintf("127.0.0.1:%d", o.ClusterPort))
	switch o.Storage {
	case StorageFile:
		fmt.Fprintf(&b, "storage \"file\" {\n  path = %q\n}\n", filepath.Join(s.Dir, "data"))
	case StorageRaft:
		// performance_multiplier = 1: elections in seconds, not tens of seconds.
		fmt.Fprintf(&b, "storage \"raft\" {\n  path = %q\n  node_id = %q\n  performance_multiplier = 1\n", filepath.Join(s.Dir, "raft"), o.NodeID)
		for _, leader := range o.RetryJoin {
			fmt.Fprintf(&b, "  retry_join {\n    leader_api_addr = %q\n  }\n", leader)
		}
		b.WriteString("}\n")
	}
	b.WriteString(o.ExtraConfig)
	return b.String()
}

func (s *Server) start(t testing.TB) {
	t.Helper()
	if s.Opts.Storage == StorageRaft {
		if err := os.MkdirAll(filepath.Join(s.Dir, "raft"), 0o700); err != nil {
			t.Fatalf("vaulttest: %v", err)
		}
	}
	var args []string
	if s.Opts.Storage == StorageDev {
		args = []string{"server", "-dev",
			"-dev-root-token-id=" + s.Opts.RootToken,
			fmt.Sprintf("-dev-listen-address=127.0.0.1:%d", s.Opts.Port),
			"-dev-plugin-dir=" + s.PluginDir,
			"-dev-no-store-token",
		}
	} else {
		args = []string{"server", "-config=" + s.ConfigPath}
	}
	args = append(args, "-log-level="+s.Opts.LogLevel)
	env := append(cleanEnv(), s.Opts.Env...)
	// The dev server would otherwise advertise itself to a developer's shell
	// through ~/.vault-token; keep HOME inside the test.
	env = append(env, "HOME="+s.Dir)
	p := startProcess(t, s.owner, "vault server "+s.Opts.Name, s.LogPath, env, s.Env.VaultBin, args...)
	s.mu.Lock()
	s.proc = p
	s.mu.Unlock()
	s.waitListening(t)
}

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

// UnsealKeys are the keys Init received (nil for a dev server).
func (s *Server) UnsealKeys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.unsealKeys...)
}

// SetRootToken and SetUnsealKeys give a server that joined a cluster the
// credentials of the node that was initialised.
func (s *Server) SetRootToken(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rootToken = token
}

func (s *Server) SetUnsealKeys(keys []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unsealKeys = append([]string(nil), keys...)
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
	c := s.ClientWithToken(t, "")
	s.poll(t, "to become active", func() error {
		h, err := c.Sys().Health()
		switch {
		case err != nil:
			return err
		case !h.Initialized:
			return fmt.Errorf("not initialised")
		case h.Sealed:
			return fmt.Errorf("sealed")
		case h.Standby:
			return fmt.Errorf("standby")
		}
		return nil
	})
}

// WaitUnsealed waits until the server is unsealed, active or standby.
func (s *Server) WaitUnsealed(t testing.TB) {
	t.Helper()
	c := s.ClientWithToken(t, "")
	s.poll(t, "to unseal", func() error {
		h, err := c.Sys().Health()
		switch {
		case err != nil:
			return err
		case h.Sealed:
			return fmt.Errorf("sealed")
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
				p.Name, p.ExitError(), what, s.LogPath, TailFile(s.LogPath, 40))
		}
		if time.Now().After(deadline) {
			t.Fatalf("vaulttest: %s did not manage %s in %s: %v", s.Opts.Name, what, readyTimeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Init initialises a non-dev server with one unseal key, keeps the root token
// and key, and unseals it.
func (s *Server) Init(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	resp, err := s.ClientWithToken(t, "").Sys().InitWithContext(ctx, &api.InitRequest{SecretShares: 1, SecretThreshold: 1})
	if err != nil {
		t.Fatalf("vaulttest: initialising %s: %v", s.Opts.Name, err)
	}
	s.mu.Lock()
	s.rootToken, s.unsealKeys = resp.RootToken, resp.Keys
	s.mu.Unlock()
	s.Unseal(t)
	s.WaitActive(t)
}

// Unseal submits the unseal keys and waits until the server is unsealed
// (active or standby).
func (s *Server) Unseal(t testing.TB) {
	t.Helper()
	keys := s.UnsealKeys()
	if len(keys) == 0 {
		t.Fatalf("vaulttest: no unseal keys for %s: Init it or SetUnsealKeys first", s.Opts.Name)
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
			return fmt.Errorf("still sealed")
		}
		return nil
	})
	s.WaitUnsealed(t)
}

// Stop stops the server gracefully (SIGTERM, then SIGKILL after a grace period).
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	s.Process().Stop()
}

// Kill kills the server and its plugins with SIGKILL.
func (s *Server) Kill(t testing.TB) {
	t.Helper()
	s.Process().Kill()
}

// Restart stops the server and starts it again with the same ports, storage
// and plugin directory; a non-dev server that was initialised is unsealed and
// ready on return.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop(t)
	s.StartAgain(t)
}

// StartAgain starts a stopped or killed server; see Restart.
func (s *Server) StartAgain(t testing.TB) {
	t.Helper()
	if p := s.Process(); p != nil && !p.Exited() {
		t.Fatalf("vaulttest: %s is still running", s.Opts.Name)
	}
	s.start(t)
	switch {
	case s.Opts.Storage == StorageDev:
		s.WaitActive(t)
	case len(s.UnsealKeys()) > 0:
		s.Unseal(t)
	}
}
