package main

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
	"github.com/hashicorp/vault/sdk/helper/pluginutil"
	"github.com/hashicorp/vault/sdk/logical"
	sdkplugin "github.com/hashicorp/vault/sdk/plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	mirakl "github.com/vault-plugin-mirakl/vault-plugin-mirakl"
	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/fakemirakl"
)

// main runs in these tests as Vault runs it: this test binary, started again
// in roleMain, calls main (TestMain in parent_test.go), which is the whole
// of the plugin's binary but for the version that `make build` stamps into
// it (the e2e tests check that one). Rebuilding the plugin here instead
// would cost the unit suite a link of the binary on every run.

// startDeadline bounds each wait on the plugin process.
const startDeadline = 15 * time.Second

// pluginCommand is the plugin as Vault starts it: the environment Vault's
// plugin runner adds (AutoMTLS, as every Vault since 1.12 uses) on top of
// its own, to which go-plugin adds the handshake variables.
func pluginCommand() *exec.Cmd {
	cmd := exec.Command(os.Args[0]) //nolint:gosec // G702: the test binary re-executes itself
	cmd.Env = append(os.Environ(), roleEnv+"="+roleMain,
		"VAULT_PLUGIN_AUTOMTLS_ENABLED=true", "VAULT_PLUGIN_METADATA_MODE=false", "VAULT_VERSION=1.21.0")
	return cmd
}

// The first line a go-plugin server prints is the handshake Vault reads:
// core protocol 1, the negotiated app protocol (5: the SDK's multiplexed
// backends), where it listens, and gRPC.
func TestMainPrintsTheHandshake(t *testing.T) {
	t.Parallel()
	cmd := pluginCommand()
	cmd.Env = append(cmd.Env,
		sdkplugin.HandshakeConfig.MagicCookieKey+"="+sdkplugin.HandshakeConfig.MagicCookieValue,
		"PLUGIN_PROTOCOL_VERSIONS=3,4,5", "PLUGIN_MIN_PORT=10000", "PLUGIN_MAX_PORT=25000")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	lines := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		lines <- line
	}()
	var line string
	select {
	case line = <-lines:
	case <-time.After(startDeadline):
		t.Fatalf("timed out after %s waiting for the plugin's handshake line; stderr:\n%s", startDeadline, stderr.String())
	}
	handshake := regexp.MustCompile(`^1\|5\|(unix|tcp)\|[^|]+\|grpc\|\n$`)
	if !handshake.MatchString(line) {
		t.Fatalf("handshake line %q, want 1|5|unix|<socket>|grpc|", line)
	}
}

// Started by anything but Vault (no magic cookie), the binary says it is a
// plugin and exits.
func TestMainRefusesToRunOutsideVault(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), startDeadline)
	defer cancel()
	cmd := pluginCommand()
	noCookie := exec.CommandContext(ctx, cmd.Path) //nolint:gosec // G204: the test binary re-executes itself
	noCookie.Env = cmd.Env
	out, err := noCookie.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("the plugin without Vault's cookie did not exit within %s", startDeadline)
	}
	if err == nil || !strings.Contains(string(out), "This binary is a plugin") {
		t.Fatalf("without the cookie: %v\n%s", err, out)
	}
}

// The whole way from Vault to Mirakl and back: go-plugin starts the binary
// with Vault's handshake and AutoMTLS, the SDK's gRPC backend client sets
// up a mount over it (multiplexed, as Vault does), and the mount reports
// its type and version, takes a config and hands out a token of the fake
// Mirakl under the lease type that Vault stores.
func TestMainServesTheBackendOverGRPC(t *testing.T) {
	t.Parallel()
	fake := fakemirakl.New("grpc-client", "grpc-secret", fakemirakl.WithTokenPrefix("grpc-"))
	t.Cleanup(fake.Close)
	logs := &lockedBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the plugin client's log (the plugin's stderr included):\n%s", logs)
		}
	})

	client := goplugin.NewClient(&goplugin.ClientConfig{
		HandshakeConfig: sdkplugin.HandshakeConfig,
		VersionedPlugins: map[int]goplugin.PluginSet{
			5: {"backend": &sdkplugin.GRPCBackendPlugin{MultiplexingSupport: true}},
		},
		Cmd:              pluginCommand(),
		AllowedProtocols: []goplugin.Protocol{goplugin.ProtocolGRPC},
		AutoMTLS:         true,
		StartTimeout:     startDeadline,
		Logger:           hclog.New(&hclog.LoggerOptions{Name: "plugin-client", Level: hclog.Debug, Output: logs}),
		// Vault names the mount of every call to a multiplexed plugin.
		GRPCDialOptions: []grpc.DialOption{grpc.WithUnaryInterceptor(withMultiplexID("mount-under-test"))},
	})
	t.Cleanup(client.Kill)
	rpc, err := client.Client()
	if err != nil {
		t.Fatalf("starting the plugin: %v", err)
	}
	if got := client.NegotiatedVersion(); got != 5 {
		t.Fatalf("negotiated protocol %d, want 5", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), startDeadline)
	defer cancel()
	multiplexed, err := pluginutil.MultiplexingSupported(ctx, rpc.(*goplugin.GRPCClient).Conn, "mirakl")
	if err != nil || !multiplexed {
		t.Fatalf("multiplexing supported: %v, %v; want the plugin served with ServeMultiplex", multiplexed, err)
	}
	raw, err := rpc.Dispense("backend")
	if err != nil {
		t.Fatal(err)
	}
	backend := raw.(logical.Backend)
	storage := &logical.InmemStorage{}
	if err := backend.Setup(ctx, &logical.BackendConfig{
		StorageView: storage,
		Logger:      hclog.NewNullLogger(),
		System:      logical.TestSystemView(),
		BackendUUID: "mount-under-test",
	}); err != nil {
		t.Fatalf("setting up the mount: %v", err)
	}
	t.Cleanup(func() { backend.Cleanup(context.Background()) })

	if got := backend.Type(); got != logical.TypeLogical {
		t.Errorf("backend type %v, want a secrets engine", got)
	}
	if got := backend.(logical.PluginVersioner).PluginVersion().Version; got != mirakl.Version {
		t.Errorf("running version %q, want %q", got, mirakl.Version)
	}

	resp, err := backend.HandleRequest(ctx, &logical.Request{
		Operation: logical.CreateOperation, Path: "config", Storage: storage, MountPoint: "mirakl/",
		Data: map[string]any{"client_id": "grpc-client", "client_secret": "grpc-secret", "token_url": fake.TokenURL()},
	})
	if err != nil || (resp != nil && resp.IsError()) {
		t.Fatalf("config write over gRPC: %#v, %v", resp, err)
	}
	resp, err = backend.HandleRequest(ctx, &logical.Request{Operation: logical.ReadOperation, Path: "token", Storage: storage, MountPoint: "mirakl/"})
	if err != nil || resp == nil || resp.IsError() {
		t.Fatalf("token read over gRPC: %#v, %v", resp, err)
	}
	if token, _ := resp.Data["access_token"].(string); !strings.HasPrefix(token, "grpc-") || resp.Secret == nil ||
		resp.Secret.InternalData["secret_type"] != "mirakl_token" {
		t.Fatalf("token read over gRPC: data %v, secret %#v", resp.Data, resp.Secret)
	}
	if v := fake.Violations(); len(v) > 0 {
		t.Errorf("the fake Mirakl saw requests that Mirakl would refuse:\n%s", strings.Join(v, "\n"))
	}
}

func withMultiplexID(id string) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		return invoker(metadata.AppendToOutgoingContext(ctx, pluginutil.MultiplexingCtxKey, id), method, req, reply, cc, opts...)
	}
}

// lockedBuffer collects log lines from the plugin client's goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
