// Package release tests what `make dist` ships: the signed SHA256SUMS and
// the SBOMs. It runs scripts/dist.sh for one platform into a temporary
// directory (a minute or two; the build cache makes later runs quicker).
package release

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

const (
	repoRoot = "../.."
	plugin   = "vault-plugin-mirakl"
)

func TestDist(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("scripts/dist.sh is a bash script; release builds run on linux or macOS")
	}
	if _, err := exec.LookPath("gpg"); err != nil {
		t.Fatalf("gpg is needed to test the signed SHA256SUMS: install GnuPG (make test-deps does, with apt-get): %v", err)
	}
	version := readVersion(t)
	tmp := t.TempDir()
	gnupg := newThrowawayKey(t, filepath.Join(tmp, "gnupg"))
	out := filepath.Join(tmp, "dist")
	name := fmt.Sprintf("%s_%s_linux_amd64", plugin, version)

	cmd := exec.Command("bash", filepath.Join(repoRoot, "scripts/dist.sh"))
	cmd.Env = append(os.Environ(),
		"DIST_DIR="+out, "DIST_PLATFORMS=linux/amd64", "SOURCE_DATE_EPOCH=1764000000", // not the commit time: a tarball has no git
		"GNUPGHOME="+gnupg.home, "SIGN_KEY="+gnupg.fingerprint)
	if output, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scripts/dist.sh: %v\n%s", err, output)
	}

	t.Run("signature", func(t *testing.T) {
		sums := filepath.Join(out, "SHA256SUMS")
		sig := filepath.Join(out, "SHA256SUMS.sig")
		if data, err := os.ReadFile(sig); err != nil || len(data) == 0 || data[0] == '-' {
			t.Fatalf("%s: want a binary (not armoured) detached signature: %v %.40q", sig, err, data)
		}
		gnupg.run(t, true, "--verify", sig, sums)
		// The README's check of the downloads, after the signature's.
		check := exec.Command("sha256sum", "--check", "--strict", "SHA256SUMS")
		check.Dir = out
		if output, err := check.CombinedOutput(); err != nil {
			t.Fatalf("sha256sum --check SHA256SUMS: %v\n%s", err, output)
		}

		// One character of one sum changed: the signature must not verify.
		data, err := os.ReadFile(sums)
		if err != nil {
			t.Fatal(err)
		}
		tampered := []byte(string(data))
		tampered[0] = map[byte]byte{'0': '1'}[tampered[0]]
		if tampered[0] == 0 {
			tampered[0] = '0'
		}
		tamperedPath := filepath.Join(tmp, "SHA256SUMS.tampered")
		if err := os.WriteFile(tamperedPath, tampered, 0o600); err != nil {
			t.Fatal(err)
		}
		gnupg.run(t, false, "--verify", sig, tamperedPath)
	})

	t.Run("sbom", func(t *testing.T) {
		sbomPath := filepath.Join(out, name+".cdx.json")
		listed, err := os.ReadFile(filepath.Join(out, "SHA256SUMS"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(listed), "  "+name+".cdx.json\n") {
			t.Errorf("SHA256SUMS does not list %s.cdx.json:\n%s", name, listed)
		}
		data, err := os.ReadFile(sbomPath)
		if err != nil {
			t.Fatal(err)
		}
		mods := binaryModules(t, filepath.Join(out, name, plugin))
		if _, ok := mods["github.com/hashicorp/vault/sdk"]; !ok {
			t.Fatalf("go version -m lists no github.com/hashicorp/vault/sdk: %v", mods)
		}
		if err := checkSBOM(data, version, mods); err != nil {
			t.Fatalf("%s: %v", sbomPath, err)
		}

		// The check itself: an SBOM missing one module, or with another
		// version of it, is refused.
		var bom map[string]any
		if err := json.Unmarshal(data, &bom); err != nil {
			t.Fatal(err)
		}
		components, _ := bom["components"].([]any)
		for i, c := range components {
			comp, _ := c.(map[string]any)
			if comp["name"] != "github.com/hashicorp/vault/sdk" {
				continue
			}
			missing := cloneWith(t, bom, append(append([]any{}, components[:i]...), components[i+1:]...))
			if err := checkSBOM(missing, version, mods); err == nil || !strings.Contains(err.Error(), "github.com/hashicorp/vault/sdk") {
				t.Errorf("an SBOM without the Vault SDK passes the check: %v", err)
			}
			other := map[string]any{}
			for k, v := range comp {
				other[k] = v
			}
			other["version"] = "v0.0.1"
			changed := cloneWith(t, bom, append(append(append([]any{}, components[:i]...), other), components[i+1:]...))
			if err := checkSBOM(changed, version, mods); err == nil {
				t.Errorf("an SBOM with the Vault SDK at another version passes the check")
			}
			return
		}
		t.Fatalf("%s names no github.com/hashicorp/vault/sdk component", sbomPath)
	})
}

// checkSBOM returns an error unless data is a CycloneDX JSON SBOM of the
// plugin at version that names every module of mods (path: version, as
// `go version -m` lists them) with its version and a pkg:golang purl.
func checkSBOM(data []byte, version string, mods map[string]string) error {
	type component struct {
		Type    string `json:"type"`
		Name    string `json:"name"`
		Version string `json:"version"`
		PURL    string `json:"purl"`
	}
	var bom struct {
		BOMFormat   string `json:"bomFormat"`
		SpecVersion string `json:"specVersion"`
		Metadata    struct {
			Component component `json:"component"`
		} `json:"metadata"`
		Components []component `json:"components"`
	}
	if err := json.Unmarshal(data, &bom); err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	if bom.BOMFormat != "CycloneDX" || !strings.HasPrefix(bom.SpecVersion, "1.") {
		return fmt.Errorf("bomFormat %q specVersion %q: not a CycloneDX 1.x BOM", bom.BOMFormat, bom.SpecVersion)
	}
	main := bom.Metadata.Component
	if main.Name != "github.com/vault-plugin-mirakl/vault-plugin-mirakl" || main.Version != version {
		return fmt.Errorf("metadata.component is %s %s, want the plugin's module at %s", main.Name, main.Version, version)
	}
	have := map[string]component{}
	for _, c := range bom.Components {
		have[c.Name] = c
	}
	var problems []string
	for path, v := range mods {
		c, ok := have[path]
		switch {
		case !ok:
			problems = append(problems, path+" is missing")
		case c.Version != v || !strings.HasPrefix(c.PURL, "pkg:golang/"+path+"@"+v+"?") && c.PURL != "pkg:golang/"+path+"@"+v:
			problems = append(problems, fmt.Sprintf("%s: version %s purl %s, want %s", path, c.Version, c.PURL, v))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("the SBOM does not match the binary's modules: %s", strings.Join(problems, "; "))
	}
	return nil
}

// binaryModules are the modules `go version -m` lists for bin, path to
// version (a replaced module: its replacement's version).
func binaryModules(t *testing.T, bin string) map[string]string {
	t.Helper()
	output, err := exec.Command("go", "version", "-m", bin).Output()
	if err != nil {
		t.Fatalf("go version -m %s: %v", bin, err)
	}
	mods := map[string]string{}
	var last string
	sc := bufio.NewScanner(strings.NewReader(string(output)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) >= 3 && f[0] == "dep":
			last, mods[f[1]] = f[1], f[2]
		case len(f) >= 3 && f[0] == "=>" && last != "":
			mods[last] = f[2]
		}
	}
	if len(mods) < 10 {
		t.Fatalf("go version -m %s lists only %d modules:\n%s", bin, len(mods), output)
	}
	return mods
}

func cloneWith(t *testing.T, bom map[string]any, components []any) []byte {
	t.Helper()
	c := map[string]any{}
	for k, v := range bom {
		c[k] = v
	}
	c["components"] = components
	data, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func readVersion(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, "VERSION"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(data))
}

// gpgHome is a GnuPG home made for one test, with one secret key and no
// passphrase: nothing of it outlives the test.
type gpgHome struct {
	home, fingerprint string
}

func newThrowawayKey(t *testing.T, home string) *gpgHome {
	t.Helper()
	if err := os.MkdirAll(home, 0o700); err != nil {
		t.Fatal(err)
	}
	g := &gpgHome{home: home}
	t.Cleanup(func() {
		kill := exec.Command("gpgconf", "--kill", "all")
		kill.Env = append(os.Environ(), "GNUPGHOME="+home)
		_ = kill.Run()
	})
	g.run(t, true, "--pinentry-mode", "loopback", "--passphrase", "",
		"--quick-generate-key", "vault-plugin-mirakl dist test <dist-test@example.invalid>", "ed25519", "sign", "1d")
	for _, line := range strings.Split(g.run(t, true, "--with-colons", "--list-secret-keys"), "\n") {
		if f := strings.Split(line, ":"); len(f) > 9 && f[0] == "fpr" {
			g.fingerprint = f[9]
			break
		}
	}
	if g.fingerprint == "" {
		t.Fatal("gpg: no fingerprint for the key just made")
	}
	return g
}

// run runs gpg --batch args in the home and fails the test unless it
// succeeds (ok) or fails (!ok); it returns stdout.
func (g *gpgHome) run(t *testing.T, ok bool, args ...string) string {
	t.Helper()
	cmd := exec.Command("gpg", append([]string{"--batch"}, args...)...)
	cmd.Env = append(os.Environ(), "GNUPGHOME="+g.home)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if (err == nil) != ok {
		t.Fatalf("gpg %s: error %v, want success %v\n%s", strings.Join(args, " "), err, ok, stderr.String())
	}
	return string(out)
}
