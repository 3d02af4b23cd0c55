package ociimage

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

var created = time.Unix(1_764_000_000, 0)

// fakeBinaries writes one small "binary" per linux platform of make oci.
func fakeBinaries(t *testing.T) []Binary {
	t.Helper()
	dir := t.TempDir()
	var bins []Binary
	for _, s := range []string{"linux/amd64", "linux/arm64"} {
		p, err := ParsePlatform(s)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, strings.ReplaceAll(s, "/", "_"))
		if err := os.WriteFile(path, []byte("plugin for "+s), 0o600); err != nil {
			t.Fatal(err)
		}
		bins = append(bins, Binary{Platform: p, Path: path})
	}
	return bins
}

// TestLayout checks what OpenBao relies on: an index with one image per
// platform (arm64 with the variant v8 that OpenBao asks for), each holding
// the binary as an executable regular file in the root, and ENTRYPOINT
// naming it.
func TestLayout(t *testing.T) {
	bins := fakeBinaries(t)
	idx, err := Build(bins, Options{Version: "v1.2.3", Created: created})
	if err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Manifests) != 2 {
		t.Fatalf("%d manifests, want 2", len(m.Manifests))
	}
	if m.Annotations["org.opencontainers.image.version"] != "v1.2.3" {
		t.Errorf("index annotations %v lack the version", m.Annotations)
	}
	for i, want := range []string{"linux/amd64", "linux/arm64/v8"} {
		d := m.Manifests[i]
		if d.Platform == nil || d.Platform.String() != want {
			t.Fatalf("manifest %d: platform %v, want %s", i, d.Platform, want)
		}
		// What OpenBao's downloader does: the image for its platform.
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cf.Platform().String() != want || len(cf.Config.Entrypoint) != 1 || cf.Config.Entrypoint[0] != "/"+DefaultBinaryName || !cf.Created.Equal(created) {
			t.Errorf("%s config: platform %s, entrypoint %v, created %v", want, cf.Platform(), cf.Config.Entrypoint, cf.Created)
		}
		checkFiles(t, img, map[string]string{DefaultBinaryName: "plugin for " + strings.TrimSuffix(want, "/v8")})
	}
}

// checkFiles fails the test unless the image's file system is exactly want
// (name to content), each an executable regular file owned by 0:0.
func checkFiles(t *testing.T, img v1.Image, want map[string]string) {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	got := map[string]string{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag != tar.TypeReg || h.Mode != 0o755 || h.Uid != 0 || h.Gid != 0 || !h.ModTime.Equal(created) {
			t.Errorf("%s: type %c mode %o owner %d:%d time %v, want a regular file 0755 0:0 at %v", h.Name, h.Typeflag, h.Mode, h.Uid, h.Gid, h.ModTime, created)
		}
		got[h.Name] = string(data)
	}
	if len(got) != len(want) {
		t.Errorf("files %v, want %v", got, want)
	}
	for n, w := range want {
		if got[n] != w {
			t.Errorf("file %q: %q, want %q", n, got[n], w)
		}
	}
}

// TestReproducible: the same binaries and time give the same digest, written
// to a layout and read back, and pushed to a registry and pulled.
func TestReproducible(t *testing.T) {
	bins := fakeBinaries(t)
	digest := func() v1.Hash {
		idx, err := Build(bins, Options{Version: "v1.2.3", Created: created})
		if err != nil {
			t.Fatal(err)
		}
		d, err := idx.Digest()
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	first := digest()
	if again := digest(); again != first {
		t.Fatalf("two builds: %s and %s", first, again)
	}
	idx, err := Build(bins, Options{Version: "v1.2.3", Created: created.Add(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := idx.Digest(); d == first {
		t.Fatalf("another time stamp gives the same digest %s: the time is not in the image", d)
	}

	dir := filepath.Join(t.TempDir(), "oci")
	idx, _ = Build(bins, Options{Version: "v1.2.3", Created: created})
	if err := WriteLayout(dir, idx, "v1.2.3"); err != nil {
		t.Fatal(err)
	}
	back, err := ReadLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := back.Digest(); d != first {
		t.Fatalf("layout holds %s, want %s", d, first)
	}

	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	repo := strings.TrimPrefix(reg.URL, "http://") + "/vault-plugin-mirakl"
	if _, err := Push(context.Background(), repo, "v1.2.3", back); err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(repo + ":v1.2.3")
	if err != nil {
		t.Fatal(err)
	}
	pulled, err := remote.Index(ref)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := pulled.Digest(); d != first {
		t.Fatalf("the registry serves %s, want %s", d, first)
	}
}

func TestBuildRefuses(t *testing.T) {
	bins := fakeBinaries(t)
	for _, tc := range []struct {
		name string
		bins []Binary
		opts Options
	}{
		{"no version", bins, Options{Created: created}},
		{"no binaries", nil, Options{Version: "v1", Created: created}},
		{"one platform twice", []Binary{bins[0], bins[0]}, Options{Version: "v1", Created: created}},
		{"a path as binary name", bins, Options{Version: "v1", Created: created, BinaryName: "bin/plugin"}},
	} {
		if _, err := Build(tc.bins, tc.opts); err == nil {
			t.Errorf("%s: built", tc.name)
		}
	}
}
