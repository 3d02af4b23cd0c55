//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/ociimage"
	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/vaulttest"
)

// ociNextVersion is the second release the OCI test upgrades to.
const ociNextVersion = "v9.9.9-oci"

// TestOCIPlugin installs the plugin into OpenBao the README's way for OpenBao
// 2.5+: the image make oci builds (internal/ociimage), pushed to a registry
// on loopback, and a plugin block in the server's config with
// plugin_auto_download and plugin_auto_register. Then an upgrade through the
// config, a restart with the registry gone (OpenBao's cache serves it), and
// a wrong sha256sum, which OpenBao must refuse. OpenBao only: Vault has no
// declarative plugins.
func TestOCIPlugin(t *testing.T) {
	t.Parallel()
	if !vaulttest.OpenBaoAvailable(t) {
		t.Skip(vaulttest.HowToRunOpenBao)
	}
	ctx := context.Background()
	e := prepareEnv(t, vaulttest.OpenBao)
	v1 := e.bins.PluginVersion

	// A registry in the test, as a user's would be: plain HTTP, which
	// go-containerregistry (in OpenBao too) speaks to loopback addresses.
	reg := httptest.NewServer(registry.New(registry.Logger(discardLogger())))
	t.Cleanup(reg.Close)
	repo := strings.TrimPrefix(reg.URL, "http://") + "/vault-plugin-mirakl"

	// The host's entry of each index holds the plugin; the other platform's
	// holds a decoy, so that OpenBao taking the wrong entry fails the
	// sha256sum check instead of passing by luck.
	decoy := writeFile(t, filepath.Join(e.dir, "decoy"), "not the plugin for this platform\n")
	pushImage(ctx, t, repo, v1, e.bins.PluginBin, decoy)

	config := func(blocks ...string) string {
		return "plugin_auto_download = true\nplugin_auto_register = true\nplugin_download_behavior = \"fail\"\n" + strings.Join(blocks, "")
	}
	block := func(image, version, sum string) string {
		return fmt.Sprintf("plugin \"secret\" \"mirakl\" {\n  image       = %q\n  version     = %q\n  binary_name = %q\n  sha256sum   = %q\n}\n",
			image, version, ociimage.DefaultBinaryName, sum)
	}
	sum1 := fileSHA256(t, e.bins.PluginBin)
	e.vault = vaulttest.StartWithConfig(t, e.bins, vaulttest.Options{
		Storage:  vaulttest.StorageFile,
		Dir:      filepath.Join(e.dir, "bao"),
		AuditLog: e.audit,
	}, config(block(repo, v1, sum1)))
	e.vault.Init(t)
	e.requireAudit(e.vault)
	root := e.root()

	// Registered by OpenBao itself, from its download cache, at the tag's version.
	var info map[string]any
	root.MustRunJSON(t, &info, "plugin", "info", "-format=json", "-version="+v1, "secret", "mirakl")
	// The command is the link OpenBao made to its cache: secret-<name>-<version>.
	if info["sha256"] != sum1 || info["command"] != "secret-mirakl-"+v1 || info["version"] != v1 {
		t.Fatalf("bao plugin info secret mirakl: %v, want command secret-mirakl-%s, version %s, sha256 %s", info, v1, v1, sum1)
	}
	cached := filepath.Join(e.vault.PluginDir, ".oci-cache", "secret-mirakl", sum1[:8], ociimage.DefaultBinaryName)
	if got := fileSHA256(t, cached); got != sum1 {
		t.Fatalf("%s: sha256 %s, want %s", cached, got, sum1)
	}

	a := e.newAccount("oci")
	root.MustRun(t, "secrets", "enable", "-path=mirakl", "-plugin-version="+v1, "mirakl")
	e.configure("mirakl", a)
	issuedBy(t, a, readToken(t, root, "mirakl").accessToken())
	checkRunningVersion(t, root, "mirakl/", v1)

	// The upgrade: a second image, declared beside the first; the mount is
	// pinned to it and reloaded, as the README says.
	next := e.vault.BuildPlugin(t, ociNextVersion)
	nextBin := filepath.Join(e.vault.PluginDir, next.Command)
	pushImage(ctx, t, repo, ociNextVersion, nextBin, decoy)
	e.vault.SetExtraConfig(t, config(block(repo, v1, sum1), block(repo, ociNextVersion, next.SHA256)))
	e.vault.Restart(t)
	root = e.root()
	root.MustRun(t, "secrets", "tune", "-plugin-version="+ociNextVersion, "mirakl/")
	root.MustRun(t, "plugin", "reload", "-plugin=mirakl")
	checkRunningVersion(t, root, "mirakl/", ociNextVersion)
	issuedBy(t, a, readToken(t, root, "mirakl").accessToken())

	// The registry gone: a restart installs nothing and runs from the cache.
	reg.Close()
	e.vault.Restart(t)
	root = e.root()
	checkRunningVersion(t, root, "mirakl/", ociNextVersion)
	issuedBy(t, a, readToken(t, root, "mirakl").accessToken())

	// A wrong sha256sum (the other platform's, as a line copied from the
	// wrong row of SHA256SUMS gives) against a registry that serves the
	// image: OpenBao downloads, checks, and refuses to start. (Not the
	// previous release's sum: OpenBao extracts into a cache directory named
	// after the expected sum, so that would overwrite, then delete, the
	// previous release's cached binary.)
	reg2 := httptest.NewServer(registry.New(registry.Logger(discardLogger())))
	t.Cleanup(reg2.Close)
	repo2 := strings.TrimPrefix(reg2.URL, "http://") + "/vault-plugin-mirakl"
	pushImage(ctx, t, repo2, ociNextVersion, nextBin, decoy)
	e.vault.SetExtraConfig(t, config(block(repo, v1, sum1), block(repo2, ociNextVersion, fileSHA256(t, decoy))))
	out := e.vault.RestartMustFail(t, time.Minute)
	if !strings.Contains(out, "plugin hash mismatch") {
		t.Fatalf("bao server with a wrong sha256sum: want it refused for a hash mismatch, log:\n%s", out)
	}

	// The right one again: it starts, and serves.
	e.vault.SetExtraConfig(t, config(block(repo, v1, sum1), block(repo2, ociNextVersion, next.SHA256)))
	e.vault.Restart(t)
	checkRunningVersion(t, e.root(), "mirakl/", ociNextVersion)
	issuedBy(t, a, readToken(t, e.root(), "mirakl").accessToken())
}

// pushImage builds the plugin's image index, bin for this machine's
// platform and other for the other linux platform that make oci builds,
// and pushes it as repo:version.
func pushImage(ctx context.Context, t *testing.T, repo, version, bin, other string) {
	t.Helper()
	otherArch := map[string]string{"amd64": "arm64", "arm64": "amd64"}[runtime.GOARCH]
	if runtime.GOOS != "linux" || otherArch == "" {
		t.Skipf("OCI plugin images are built for linux/amd64 and linux/arm64, not %s/%s", runtime.GOOS, runtime.GOARCH)
	}
	var bins []ociimage.Binary
	for _, b := range []struct{ arch, path string }{{runtime.GOARCH, bin}, {otherArch, other}} {
		p, err := ociimage.ParsePlatform("linux/" + b.arch)
		if err != nil {
			t.Fatal(err)
		}
		bins = append(bins, ociimage.Binary{Platform: p, Path: b.path})
	}
	idx, err := ociimage.Build(bins, ociimage.Options{Version: version, Created: time.Unix(1_700_000_000, 0)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ociimage.Push(ctx, repo, version, idx); err != nil {
		t.Fatalf("pushing %s:%s: %v", repo, version, err)
	}
}

// checkRunningVersion fails the test unless the mount at path runs version.
func checkRunningVersion(t *testing.T, cli *vaulttest.CLI, path, version string) {
	t.Helper()
	var mounts map[string]struct {
		RunningVersion string `json:"running_plugin_version"`
	}
	cli.MustRunJSON(t, &mounts, "secrets", "list", "-detailed", "-format=json")
	if got := mounts[path].RunningVersion; got != version {
		t.Fatalf("bao secrets list: %s runs %q, want %q", path, got, version)
	}
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	sum, err := vaulttest.FileSHA256(path)
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

// discardLogger keeps the registry's request log out of the test output.
func discardLogger() *log.Logger { return log.New(io.Discard, "", 0) }
