// Command oci-image builds the plugin's OCI image for OpenBao's declarative
// plugins (internal/ociimage) from release binaries, writes it as an OCI
// image layout and, with -push, pushes it to a registry, tagged with the
// version. `make oci` runs it on the linux binaries `make dist` built:
//
//	oci-image -version v0.1.0 -epoch 1733300000 -layout dist/oci \
//	  -binary linux/amd64=dist/vault-plugin-mirakl_v0.1.0_linux_amd64/vault-plugin-mirakl \
//	  -binary linux/arm64=dist/vault-plugin-mirakl_v0.1.0_linux_arm64/vault-plugin-mirakl \
//	  [-push registry.example.com/org/vault-plugin-mirakl]
//
// It prints the plugin stanza for OpenBao's config, with each platform's
// sha256sum.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/ociimage"
)

// binaries is the repeatable -binary flag: os/arch=path.
type binaries []ociimage.Binary

func (b *binaries) String() string { return fmt.Sprint(len(*b), " binaries") }

func (b *binaries) Set(s string) error {
	platform, p, ok := strings.Cut(s, "=")
	if !ok || p == "" {
		return fmt.Errorf("%q: want os/arch=path", s)
	}
	pl, err := ociimage.ParsePlatform(platform)
	if err != nil {
		return err
	}
	*b = append(*b, ociimage.Binary{Platform: pl, Path: p})
	return nil
}

func main() {
	var bins binaries
	flag.Var(&bins, "binary", "os/arch=path of a plugin binary (repeat per platform)")
	version := flag.String("version", "", "the plugin version the binaries report (the VERSION file): the image's tag")
	epoch := flag.Int64("epoch", -1, "every time stamp of the image, in seconds since 1970 (SOURCE_DATE_EPOCH, the commit time)")
	layoutDir := flag.String("layout", "", "directory to write the OCI image layout into (replaced)")
	push := flag.String("push", "", "repository to push to as REPO:VERSION, such as registry.example.com/org/vault-plugin-mirakl")
	source := flag.String("source", "", "the project's URL, for the org.opencontainers.image.source label")
	flag.Parse()
	log.SetFlags(0)
	if *version == "" || *epoch < 0 || len(bins) == 0 || (*layoutDir == "" && *push == "") || flag.NArg() != 0 {
		log.Fatal("usage: oci-image -version V -epoch SECONDS -binary os/arch=path... [-layout DIR] [-push REPO]")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, bins, *version, time.Unix(*epoch, 0), *layoutDir, *push, *source); err != nil {
		log.Fatalf("oci-image: %v", err)
	}
}

func run(ctx context.Context, bins []ociimage.Binary, version string, created time.Time, layoutDir, push, source string) error {
	idx, err := ociimage.Build(bins, ociimage.Options{Version: version, Created: created, Source: source})
	if err != nil {
		return err
	}
	digest, err := idx.Digest()
	if err != nil {
		return err
	}
	if layoutDir != "" {
		if err := ociimage.WriteLayout(layoutDir, idx, version); err != nil {
			return fmt.Errorf("writing the layout: %w", err)
		}
		fmt.Fprintf(os.Stderr, "oci-image: %s written to %s, tag %s\n", digest, layoutDir, version)
	}
	image := "<registry>/<repo>"
	if push != "" {
		ref, err := ociimage.Push(ctx, push, version, idx)
		if err != nil {
			return fmt.Errorf("pushing: %w", err)
		}
		fmt.Fprintf(os.Stderr, "oci-image: pushed %s@%s\n", ref, digest)
		image = push
	}
	fmt.Printf("# OpenBao 2.5+: the plugin stanza; sha256sum is of the binary for the nodes' platform\n")
	for _, b := range bins {
		data, err := os.ReadFile(b.Path)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		fmt.Printf("#   %s: %s\n", b.Platform, hex.EncodeToString(sum[:]))
	}
	fmt.Printf("plugin \"secret\" \"mirakl\" {\n  image       = %q\n  version     = %q\n  binary_name = %q\n  sha256sum   = \"<sha256 above>\"\n}\n",
		image, version, ociimage.DefaultBinaryName)
	return nil
}
