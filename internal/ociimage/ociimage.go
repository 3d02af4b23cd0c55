// Package ociimage builds the plugin's OCI image for OpenBao's declarative
// plugins (OpenBao 2.5+): a multi-platform image index whose images each hold
// one file, the plugin binary, in the root directory, with ENTRYPOINT naming
// it. OpenBao, given
//
//	plugin "secret" "mirakl" {
//	  image       = "registry.example.com/vault-plugin-mirakl"
//	  version     = "v0.1.0"                 # the tag, and the catalog version
//	  binary_name = "vault-plugin-mirakl"
//	  sha256sum   = "<sha256 of the binary>"
//	}
//
// pulls image:version for its own platform, extracts binary_name from the
// root of the image's file system, checks its sha256 against sha256sum and
// caches it under <plugin_directory>/.oci-cache/. (OpenBao 2.5 and 2.6 need
// binary_name; later releases fall back to ENTRYPOINT.)
//
// The image is reproducible: every time stamp is the given epoch, the layer
// has one entry with fixed owner and mode, and go-containerregistry writes the
// rest deterministically, so the same binaries and epoch give the same
// digests. It lives outside the plugin's packages so that
// go-containerregistry never links into the plugin binary (scripts/dist.sh
// checks).
package ociimage

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// DefaultBinaryName is the file the images hold: the plugin's name, which
// the plugin stanza's binary_name names.
const DefaultBinaryName = "vault-plugin-mirakl"

// Binary is one platform's plugin binary.
type Binary struct {
	Platform v1.Platform
	Path     string
}

// ParsePlatform is v1.ParsePlatform, plus the variant v8 on arm64: OpenBao
// asks for the platform containerd names for its host, which is
// linux/arm64/v8 there, and an index entry without the variant does not
// match it.
func ParsePlatform(s string) (v1.Platform, error) {
	p, err := v1.ParsePlatform(s)
	if err != nil {
		return v1.Platform{}, err
	}
	if p.Architecture == "arm64" && p.Variant == "" {
		p.Variant = "v8"
	}
	return *p, nil
}

// Options describe the image.
type Options struct {
	// Version is the plugin's version, such as v0.1.0: the tag, and an
	// annotation of the index.
	Version string
	// BinaryName is the file in the image's root ("": DefaultBinaryName).
	BinaryName string
	// Created is every time stamp of the image (the commit time, for a
	// release: SOURCE_DATE_EPOCH).
	Created time.Time
	// Source is the project's URL, for the org.opencontainers.image.source
	// label ("": none).
	Source string
}

// Build makes the image index, one image per binary.
func Build(binaries []Binary, opts Options) (v1.ImageIndex, error) {
	if opts.Version == "" {
		return nil, errors.New("ociimage: no version")
	}
	if len(binaries) == 0 {
		return nil, errors.New("ociimage: no binaries")
	}
	if opts.BinaryName == "" {
		opts.BinaryName = DefaultBinaryName
	}
	created := opts.Created.UTC()
	annotations := map[string]string{
		"org.opencontainers.image.title":   opts.BinaryName,
		"org.opencontainers.image.version": opts.Version,
		"org.opencontainers.image.created": created.Format(time.RFC3339),
	}
	if opts.Source != "" {
		annotations["org.opencontainers.image.source"] = opts.Source
	}

	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	seen := map[string]bool{}
	for _, b := range binaries {
		p := b.Platform
		if seen[p.String()] {
			return nil, fmt.Errorf("ociimage: two binaries for %s", p)
		}
		seen[p.String()] = true
		img, err := image(b, opts.BinaryName, created, annotations)
		if err != nil {
			return nil, fmt.Errorf("ociimage: %s: %w", p, err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &p},
		})
	}
	out, ok := mutate.Annotations(idx, annotations).(v1.ImageIndex)
	if !ok {
		return nil, errors.New("ociimage: annotating the index did not give an index")
	}
	return out, nil
}

// image is one platform's image: a layer holding the binary, and a config
// that names it as ENTRYPOINT.
func image(b Binary, binaryName string, created time.Time, labels map[string]string) (v1.Image, error) {
	data, err := os.ReadFile(b.Path)
	if err != nil {
		return nil, err
	}
	layerTar, err := singleFileTar(binaryName, data, created)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}

	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History: v1.History{
			Created:   v1.Time{Time: created},
			CreatedBy: "vault-plugin-mirakl internal/cmd/oci-image",
			Comment:   "the plugin binary",
		},
	})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Created = v1.Time{Time: created}
	cf.OS, cf.Architecture, cf.Variant = b.Platform.OS, b.Platform.Architecture, b.Platform.Variant
	cf.Config.Entrypoint = []string{"/" + binaryName}
	cf.Config.Labels = labels
	return mutate.ConfigFile(img, cf)
}

// singleFileTar is a tar stream with one executable file at the root, owned
// by 0:0, modified at mtime.
func singleFileTar(name string, data []byte, mtime time.Time) ([]byte, error) {
	if name != path.Base(name) || name == "." || name == "/" {
		return nil, fmt.Errorf("binary name %q is not a plain file name", name)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	h := &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     name,
		Mode:     0o755,
		Size:     int64(len(data)),
		ModTime:  mtime,
		Format:   tar.FormatUSTAR,
	}
	if err := tw.WriteHeader(h); err != nil {
		return nil, err
	}
	if _, err := tw.Write(data); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// WriteLayout writes idx as an OCI image layout in dir (replacing one that
// is there), tagged tag (the org.opencontainers.image.ref.name annotation
// that tools such as skopeo, crane and oras read as the tag).
func WriteLayout(dir string, idx v1.ImageIndex, tag string) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	return p.AppendIndex(idx, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": tag,
	}))
}

// ReadLayout reads back the index that WriteLayout wrote.
func ReadLayout(dir string) (v1.ImageIndex, error) {
	p, err := layout.FromPath(dir)
	if err != nil {
		return nil, err
	}
	outer, err := p.ImageIndex()
	if err != nil {
		return nil, err
	}
	m, err := outer.IndexManifest()
	if err != nil {
		return nil, err
	}
	if len(m.Manifests) != 1 {
		return nil, fmt.Errorf("%s holds %d indexes, want 1", dir, len(m.Manifests))
	}
	return outer.ImageIndex(m.Manifests[0].Digest)
}

// Push pushes idx to repo:tag (repo such as registry.example.com/org/name).
// Credentials come from the Docker config (~/.docker/config.json,
// DOCKER_CONFIG), as `docker login` leaves them. Registries on loopback or a
// private network are spoken to in plain HTTP, every other over HTTPS (with
// the system's roots, or SSL_CERT_FILE's).
func Push(ctx context.Context, repo, tag string, idx v1.ImageIndex) (name.Reference, error) {
	ref, err := name.NewTag(repo + ":" + tag)
	if err != nil {
		return nil, err
	}
	return ref, remote.WriteIndex(ref, idx, remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain))
}
