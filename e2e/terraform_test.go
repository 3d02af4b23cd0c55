//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/fakemirakl"
	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/vaulttest"
)

// The Terraform provider comes from a filesystem mirror when there is one
// (machines that cannot reach the registry), else from the registry.
const (
	// envTerraformMirror names a mirror elsewhere than defaultTerraformMirror.
	envTerraformMirror = "MIRAKL_TF_MIRROR"
	// defaultTerraformMirror is relative to the repository's root.
	defaultTerraformMirror = "../shared/terraform/mirror"
	// terraformProvider is the provider the example requires, as a mirror holds it.
	terraformProvider = "registry.terraform.io/hashicorp/vault"
)

// defaultPluginCommand is the default of the example's plugin_command.
const defaultPluginCommand = "vault-plugin-mirakl"

// terraformTimeout bounds one terraform command (init may download the provider).
const terraformTimeout = 5 * time.Minute

// examples/terraform, run as its README says: init, apply, plans that must
// find nothing to do, drift put back, failed writes that the next plan must
// not forget (the rotation of the secret above all), and a destroy that
// leaves nothing behind.
func TestTerraform(t *testing.T) {
	t.Parallel()
	tf := newTerraform(t)
	e := newEnv(t)
	acme := e.newAccount("acme", fakemirakl.WithAudiences("", acmeAudience, globexAudience))
	root := e.root()
	p := e.vault.Plugin()

	// The README's step 3: a token with the capabilities the example needs, no more.
	root.MustRun(t, "policy", "write", "mirakl-terraform", filepath.Join(repoRoot, "examples/terraform/terraform-policy.hcl"))
	token := strings.TrimSpace(root.MustRun(t, "token", "create", "-policy=mirakl-terraform", "-field=token"))
	tf.env = append(tf.env, "VAULT_ADDR="+e.vault.Addr, "VAULT_TOKEN="+token)
	// The README's -var flags, for the release p, and the fake's token_url.
	varsFor := func(p vaulttest.Plugin) []string {
		vars := []string{
			"-var", "plugin_version=" + p.Version,
			"-var", "plugin_sha256=" + p.SHA256,
			"-var", "client_id=" + acme.clientID,
			"-var", "token_url=" + acme.fake.TokenURL(),
			"-var", fmt.Sprintf("roles={acme=%q}", acmeAudience),
		}
		if p.Command != defaultPluginCommand { // the upgrade's second binary, or a .exe
			vars = append(vars, "-var", "plugin_command="+p.Command)
		}
		return vars
	}
	tf.vars = varsFor(p)
	tf.secret = acme.clientSecret
	t.Cleanup(func() { tf.checkNoLeak(t, e) })

	// Mirakl (the fake) accepts one secret at a time, as after a rotation.
	miraklAccepts := func(secret string) { acme.fake.SetCredentials(acme.clientID, secret) }
	// vaultHolds fails the test unless the secret stored in Vault is
	// secret: `vault write -f` exchanges the stored credentials for a fresh
	// token, which Mirakl now gives for secret only.
	vaultHolds := func(t *testing.T, secret, when string) {
		t.Helper()
		miraklAccepts(secret)
		if r := root.Run(t, "write", "-f", "mirakl/config"); r.ExitCode != 0 {
			t.Fatalf("%s, Vault does not hold the secret it should: vault write -f mirakl/config: exit %d:\n%s",
				when, r.ExitCode, r.Output())
		}
		issuedBy(t, acme, readToken(t, root, "mirakl").accessToken())
	}
	miraklDown := func(down bool) {
		if down {
			acme.fake.FailRandomly(1, fakemirakl.HTMLError(http.StatusServiceUnavailable))
		} else {
			acme.fake.FailRandomly(0, fakemirakl.Fault{})
		}
	}

	if !t.Run("init and apply", func(t *testing.T) {
		tf.mustRun(t, "init", "-input=false", "-no-color")
		tf.apply(t)

		if got := mountVersions(t, root, "mirakl"); got.Pinned != p.Version || got.Running != p.Version || got.SHA256 != p.SHA256 {
			t.Errorf("mirakl/ after terraform apply: pinned %s, running %s (sha256 %s); want %s (sha256 %s)",
				got.Pinned, got.Running, got.SHA256, p.Version, p.SHA256)
		}
		cfg := checkConfig(t, root, "mirakl", acme, "after terraform apply")
		if cfg["min_ttl"] != float64(600) || cfg["request_timeout"] != float64(30) {
			t.Errorf("config after terraform apply: %v, want the variables' defaults min_ttl 600 and request_timeout 30", cfg)
		}
		issuedBy(t, acme, readToken(t, root, "mirakl").accessToken())

		reader := e.vault.CLIWithToken(strings.TrimSpace(root.MustRun(t, "token", "create", "-policy=mirakl-reader", "-field=token")))
		issuedBy(t, acme, readToken(t, reader, "mirakl").accessToken())
		denied(t, reader.Run(t, "read", "mirakl/config"))
		denied(t, reader.Run(t, "write", "mirakl/config", "min_ttl=60"))

		// The role, its team's policy, and where the team reads.
		checkRole(t, root, "acme", acmeAudience, "after terraform apply")
		team := e.asPolicy("mirakl-role-acme")
		forAudience(t, acme, readRoleToken(t, team, "mirakl", "acme").accessToken(), acmeAudience)
		denied(t, team.Run(t, "read", "mirakl/token"))
		denied(t, team.Run(t, "write", "mirakl/roles/acme", "audience="+globexAudience))
		if out := tf.mustRun(t, "output", "-json", "role_token_paths"); strings.Join(strings.Fields(out), "") != `{"acme":"mirakl/token/acme"}` {
			t.Errorf("terraform output role_token_paths: %s", out)
		}

		// The README: the secret is in the state. (Marked sensitive, it is
		// in no output: see checkNoLeak.)
		if state := tf.readFile(t, "terraform.tfstate"); !strings.Contains(state, secretMarker) {
			t.Errorf("the state holds no client secret: the README says it does")
		}
		tf.plan(t, 0, "after the first apply", "No changes.")
	}) {
		return
	}

	if !t.Run("drift is put back, even after a failed write", func(t *testing.T) {
		root.MustRun(t, "write", "mirakl/config", "min_ttl=900")
		tf.plan(t, 2, "after min_ttl changed outside Terraform", "vault_generic_endpoint.mirakl_config will be updated in-place")

		miraklDown(true)
		tf.applyFails(t, "while Mirakl is down", nil, "Code: 502", "nothing was stored")
		miraklDown(false)
		// The failed update left the planned data_json in the state, but
		// the refresh reads min_ttl as Vault has it.
		tf.plan(t, 2, "after the failed update", "vault_generic_endpoint.mirakl_config will be updated in-place")

		tf.apply(t)
		if cfg := checkConfig(t, root, "mirakl", acme, "after the drift was applied"); cfg["min_ttl"] != float64(600) {
			t.Errorf("min_ttl after terraform apply: %v, want 600 again", cfg["min_ttl"])
		}
		tf.plan(t, 0, "after the drift was applied", "No changes.")
	}) {
		return
	}

	if !t.Run("a role pointed at another company is put back", func(t *testing.T) {
		root.MustRun(t, "write", "mirakl/roles/acme", "audience="+globexAudience)
		tf.plan(t, 2, "after the role changed outside Terraform", `vault_generic_endpoint.mirakl_role["acme"] will be updated in-place`)
		tf.apply(t)
		checkRole(t, root, "acme", acmeAudience, "after the drift was applied")
		forAudience(t, acme, readRoleToken(t, root, "mirakl", "acme").accessToken(), acmeAudience)
		tf.plan(t, 0, "after the role's drift was applied", "No changes.")
	}) {
		return
	}

	rotated := e.newSecret("rotated")
	if !t.Run("a rotation while Mirakl is down is not lost", func(t *testing.T) {
		tf.secret = rotated
		tf.plan(t, 2, "with a new secret", "vault_generic_endpoint.mirakl_config will be replaced due to changes in replace_triggered_by")
		miraklDown(true)
		tf.applyFails(t, "while Mirakl is down", nil, "Code: 502", "nothing was stored")
		miraklDown(false)
		// Vault kept the config it had (the replacement's delete did nothing)...
		checkConfig(t, root, "mirakl", acme, "after the failed rotation")
		vaultHolds(t, acme.clientSecret, "after the failed rotation")
		// ... and Terraform did not take the write for done.
		tf.plan(t, 2, "after the failed rotation", "vault_generic_endpoint.mirakl_config will be created")

		miraklAccepts(rotated)
		tf.apply(t)
		vaultHolds(t, rotated, "after the rotation was applied again")
		tf.plan(t, 0, "after the rotation", "No changes.")
	}) {
		return
	}

	if !t.Run("a refused secret is not taken for written", func(t *testing.T) {
		tf.secret = e.newSecret("wrong")
		tf.applyFails(t, "with a secret Mirakl refuses", nil, "Code: 400", "nothing was stored: Mirakl refused the credentials")
		vaultHolds(t, rotated, "after the refused secret")
		tf.secret = rotated
		tf.plan(t, 2, "with the right secret again", "vault_generic_endpoint.mirakl_config will be created")
		tf.apply(t)
		vaultHolds(t, rotated, "after the right secret was applied")
	}) {
		return
	}

	if !t.Run("a secret changed outside Terraform, written again with -replace", func(t *testing.T) {
		outside := e.newSecret("outside")
		miraklAccepts(outside)
		root.WithStdin(outside+"\n").MustRun(t, "write", "mirakl/config", "client_secret=-")
		tf.plan(t, 0, "after the secret changed outside Terraform (not drift, as the README says)", "No changes.")

		// -replace is safe here: a failed write leaves Vault's config as it was.
		replace := "-replace=vault_generic_endpoint.mirakl_config"
		tf.applyFails(t, "while Mirakl accepts only the secret written outside", []string{replace}, "Code: 400")
		vaultHolds(t, outside, "after a failed terraform apply -replace")
		tf.plan(t, 2, "after a failed terraform apply -replace", "vault_generic_endpoint.mirakl_config will be created")

		miraklAccepts(rotated)
		tf.apply(t, replace)
		vaultHolds(t, rotated, "after terraform apply -replace")
		tf.plan(t, 0, "after terraform apply -replace", "No changes.")
	}) {
		return
	}

	again := e.newSecret("again")
	// What the README says of a configuration without the example's
	// replace_triggered_by: the trap, and the way out of it.
	if !t.Run("without the trigger: terraform state rm, then apply", func(t *testing.T) {
		shipped := tf.readFile(t, "main.tf")
		tf.writeFile(t, "main.tf", replaceAll(t, shipped,
			"  disable_delete = true\n", "",
			"  lifecycle {\n    replace_triggered_by = [terraform_data.client_secret_version]\n  }\n", "",
		))
		tf.apply(t) // disable_delete back to false
		tf.plan(t, 0, "without the trigger", "No changes.")

		tf.secret = again
		tf.plan(t, 2, "with a new secret, without the trigger", "vault_generic_endpoint.mirakl_config will be updated in-place")
		miraklDown(true)
		tf.applyFails(t, "while Mirakl is down", nil, "Code: 502", "nothing was stored")
		miraklDown(false)
		// Should this fail, the provider no longer keeps a failed write's
		// data_json in the state: the README's note can say so.
		tf.plan(t, 0, "after the failed update of the secret (the trap the README warns of)", "No changes.")
		vaultHolds(t, rotated, "after the failed update of the secret")

		tf.mustRun(t, "state", "rm", "vault_generic_endpoint.mirakl_config")
		tf.plan(t, 2, "after terraform state rm", "vault_generic_endpoint.mirakl_config will be created")
		miraklAccepts(again)
		tf.apply(t)
		vaultHolds(t, again, "after terraform state rm and apply")

		tf.writeFile(t, "main.tf", shipped)
		tf.apply(t)
		tf.plan(t, 0, "with the shipped main.tf back", "No changes.")
		vaultHolds(t, again, "with the shipped main.tf back")
	}) {
		return
	}

	// The README's "Upgrading the plugin": a second binary beside the first,
	// the new version and sha256, then vault plugin reload.
	installed := p // the release Terraform registered last
	if !t.Run("upgrade", func(t *testing.T) {
		lease := readToken(t, root, "mirakl")
		next := e.vault.BuildPlugin(t, "v9.9.9-terraform")
		tf.vars = varsFor(next)
		tf.plan(t, 2, "with the new release", "vault_plugin.mirakl must be replaced", "vault_mount.mirakl will be updated in-place")
		tf.apply(t)
		installed = next
		root.MustRun(t, "plugin", "reload", "-plugin=mirakl")
		requireRunning(t, e.vault, "mirakl", next, p, "after terraform apply and vault plugin reload")
		root.MustFail(t, "plugin", "info", "-version="+p.Version, "secret", "mirakl")
		checkConfig(t, root, "mirakl", acme, "after the upgrade")
		root.MustRun(t, "lease", "lookup", lease.LeaseID)
		vaultHolds(t, again, "after the upgrade")
		tf.plan(t, 0, "after the upgrade", "No changes.")
	}) {
		return
	}

	t.Run("destroy leaves nothing behind", func(t *testing.T) {
		lease := readToken(t, root, "mirakl")
		tf.mustRun(t, append([]string{"destroy", "-auto-approve", "-input=false", "-no-color"}, tf.vars...)...)
		if out := root.MustRun(t, "secrets", "list"); strings.Contains(out, "mirakl/") {
			t.Errorf("vault secrets list after terraform destroy still shows mirakl/:\n%s", out)
		}
		root.MustFail(t, "read", "mirakl/config")
		root.MustFail(t, "lease", "lookup", lease.LeaseID)
		root.MustFail(t, "policy", "read", "mirakl-reader")
		root.MustFail(t, "policy", "read", "mirakl-role-acme")
		// (The dev server registered vault-plugin-mirakl itself, from its
		// plugin directory, when it started.)
		out := root.MustRun(t, "plugin", "list", "secret")
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) > 0 && f[0] == "mirakl" {
				t.Errorf("vault plugin list secret after terraform destroy still shows mirakl:\n%s", out)
			}
		}
		root.MustFail(t, "plugin", "info", "-version="+installed.Version, "secret", "mirakl")
		if out := tf.mustRun(t, "state", "list"); strings.TrimSpace(out) != "" {
			t.Errorf("terraform state list after destroy:\n%s", out)
		}
	})
}

// checkRole fails the test unless cli reads role with audience; when says
// at which point of the test.
func checkRole(t *testing.T, cli *vaulttest.CLI, role, audience, when string) {
	t.Helper()
	var read struct {
		Data map[string]any `json:"data"`
	}
	cli.MustRunJSON(t, &read, "read", "-format=json", "mirakl/roles/"+role)
	if read.Data["audience"] != audience {
		t.Errorf("vault read mirakl/roles/%s %s: %v, want audience %s", role, when, read.Data, audience)
	}
}

// newSecret is another client secret for the account, marked so that the
// leak check looks for it.
func (e *testEnv) newSecret(name string) string {
	s := secretMarker + "-" + name + `+/=&%"<>` + randomHex()
	e.secrets = append(e.secrets, s)
	return s
}

// terraformRun is one finished terraform command.
type terraformRun struct {
	args     []string
	output   string // stdout and stderr, interleaved
	exitCode int
}

// terraformWorkspace is a working copy of examples/terraform (with the
// policies it reads) and the terraform, or tofu, that runs in it.
type terraformWorkspace struct {
	bin    string   // terraform or tofu
	dir    string   // the working copy of examples/terraform
	env    []string // every command's environment, but the secret
	vars   []string // -var flags of plan, apply and destroy
	secret string   // TF_VAR_client_secret, as the README passes it
	runs   []*terraformRun
}

// newTerraform finds terraform (or tofu) on PATH, failing the test if there
// is neither, copies the example into a temporary directory and points the
// CLI at the provider mirror if there is one.
func newTerraform(t *testing.T) *terraformWorkspace {
	t.Helper()
	bin, err := exec.LookPath("terraform")
	if err != nil {
		bin, err = exec.LookPath("tofu")
	}
	if err != nil {
		t.Fatal("neither terraform nor tofu is on PATH: install Terraform 1.5 or later " +
			"(https://developer.hashicorp.com/terraform/install) or OpenTofu (https://opentofu.org/docs/intro/install/)")
	}
	base := t.TempDir()
	// examples/terraform reads ../policies/mirakl-reader.hcl.
	for _, dir := range []string{"terraform", "policies"} {
		copyExample(t, filepath.Join(repoRoot, "examples", dir), filepath.Join(base, "examples", dir))
	}
	w := &terraformWorkspace{bin: bin, dir: filepath.Join(base, "examples", "terraform")}
	for _, kv := range os.Environ() {
		// Nothing of the caller's Terraform or Vault settings (TF_LOG would
		// print the provider's requests, secret included).
		if !strings.HasPrefix(kv, "TF_") && !strings.HasPrefix(kv, "VAULT_") {
			w.env = append(w.env, kv)
		}
	}
	w.env = append(w.env,
		"TF_IN_AUTOMATION=1",
		"TF_INPUT=0",
		"CHECKPOINT_DISABLE=1",
		"TF_DATA_DIR="+filepath.Join(base, "tf-data"),
	)
	if mirror := terraformMirror(t); mirror != "" {
		w.env = append(w.env, "TF_CLI_CONFIG_FILE="+writeMirrorConfig(t, base, bin, mirror))
	}
	return w
}

// terraformMirror is the provider mirror to use: MIRAKL_TF_MIRROR if set
// (it must exist), else ../shared/terraform/mirror from the repository's
// root if it holds the provider, else "" (the registry).
func terraformMirror(t *testing.T) string {
	t.Helper()
	if dir := os.Getenv(envTerraformMirror); dir != "" {
		if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(terraformProvider))); err != nil {
			t.Fatalf("%s=%s holds no %s: %v", envTerraformMirror, dir, terraformProvider, err)
		}
		return absPath(t, dir)
	}
	dir := filepath.Join(repoRoot, filepath.FromSlash(defaultTerraformMirror))
	if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(terraformProvider))); err != nil {
		t.Logf("no provider mirror at %s: terraform init downloads the provider from the registry", dir)
		return ""
	}
	return absPath(t, dir)
}

// writeMirrorConfig writes a CLI configuration that takes the vault provider
// from mirror and every other from the registry. OpenTofu looks for
// hashicorp/vault under its own registry's host name, so it gets a mirror
// whose directory of that name links to the mirror's.
func writeMirrorConfig(t *testing.T, base, bin, mirror string) string {
	t.Helper()
	provider := terraformProvider
	if strings.HasPrefix(filepath.Base(bin), "tofu") {
		const from, to = "registry.terraform.io", "registry.opentofu.org"
		provider = strings.Replace(terraformProvider, from, to, 1)
		view := filepath.Join(base, "mirror")
		if err := os.MkdirAll(view, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join(mirror, from), filepath.Join(view, to)); err != nil {
			t.Fatalf("a mirror for OpenTofu: %v", err)
		}
		mirror = view
	}
	config := fmt.Sprintf(`provider_installation {
  filesystem_mirror {
    path    = %q
    include = [%q]
  }
  direct {
    exclude = [%q]
  }
}
`, filepath.ToSlash(mirror), provider, provider)
	return writeFile(t, filepath.Join(base, "terraform.tfrc"), config)
}

// run runs one command in the working copy and returns what happened,
// whatever the exit code.
func (w *terraformWorkspace) run(t *testing.T, args ...string) *terraformRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), terraformTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, w.bin, args...)
	cmd.Dir = w.dir
	cmd.Env = append(append([]string(nil), w.env...), "TF_VAR_client_secret="+w.secret)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	r := &terraformRun{args: args, output: out.String()}
	defer func() {
		t.Helper()
		t.Logf("%s %s: exit %d in %s", filepath.Base(w.bin), args[0], r.exitCode, time.Since(start).Round(100*time.Millisecond))
	}()
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("%s %s: no answer within %s:\n%s", filepath.Base(w.bin), strings.Join(args, " "), terraformTimeout, r.output)
	case errors.As(err, &exit):
		r.exitCode = exit.ExitCode()
	case err != nil:
		t.Fatalf("running %s %s: %v", w.bin, strings.Join(args, " "), err)
	}
	w.runs = append(w.runs, r)
	return r
}

// mustRun runs a command, fails the test unless it exits 0, and returns its output.
func (w *terraformWorkspace) mustRun(t *testing.T, args ...string) string {
	t.Helper()
	r := w.run(t, args...)
	if r.exitCode != 0 {
		t.Fatalf("%s %s: exit %d:\n%s", filepath.Base(w.bin), strings.Join(args, " "), r.exitCode, r.output)
	}
	return r.output
}

// applyFails runs the README's apply, with extra flags, and fails the test
// unless it fails, saying each of wants.
func (w *terraformWorkspace) applyFails(t *testing.T, when string, extra []string, wants ...string) {
	t.Helper()
	args := append(append([]string{"apply", "-auto-approve", "-input=false", "-no-color"}, extra...), w.vars...)
	r := w.run(t, args...)
	if r.exitCode == 0 {
		t.Fatalf("%s %s %s succeeded, want a failure:\n%s", filepath.Base(w.bin), strings.Join(args, " "), when, r.output)
	}
	for _, want := range wants {
		if !strings.Contains(r.output, want) {
			t.Errorf("%s %s %s: no %q in:\n%s", filepath.Base(w.bin), strings.Join(args, " "), when, want, r.output)
		}
	}
}

// apply is the README's terraform apply, approved, with extra flags.
func (w *terraformWorkspace) apply(t *testing.T, extra ...string) {
	t.Helper()
	args := append([]string{"apply", "-auto-approve", "-input=false", "-no-color"}, extra...)
	w.mustRun(t, append(args, w.vars...)...)
}

// plan runs plan -detailed-exitcode and fails the test unless it exits
// with want (0: no changes, 2: changes) and says each of says.
func (w *terraformWorkspace) plan(t *testing.T, want int, when string, says ...string) {
	t.Helper()
	args := append([]string{"plan", "-detailed-exitcode", "-input=false", "-no-color"}, w.vars...)
	r := w.run(t, args...)
	if r.exitCode != want {
		t.Fatalf("terraform plan %s: exit %d, want %d:\n%s", when, r.exitCode, want, r.output)
	}
	for _, say := range says {
		if !strings.Contains(r.output, say) {
			t.Fatalf("terraform plan %s: no %q in:\n%s", when, say, r.output)
		}
	}
}

func (w *terraformWorkspace) readFile(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(w.dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func (w *terraformWorkspace) writeFile(t *testing.T, name, content string) {
	t.Helper()
	writeFile(t, filepath.Join(w.dir, name), content)
}

// checkNoLeak fails the test if the output of a terraform command shows a
// client secret, its sha256 or an access token: the README says that marking
// the variable sensitive keeps it out of plans and logs.
func (w *terraformWorkspace) checkNoLeak(t *testing.T, e *testEnv) {
	secrets := append([]string(nil), e.secrets...)
	for _, a := range e.accounts {
		secrets = append(secrets, a.clientSecret)
	}
	needles := []string{secretMarker, tokenMarker}
	for _, s := range secrets {
		// The example keeps a sha256 of the secret: no plan may show it either.
		sum := sha256.Sum256([]byte(s))
		needles = append(needles, s, hex.EncodeToString(sum[:]))
	}
	for _, r := range w.runs {
		for _, n := range needles {
			if i := strings.Index(r.output, n); i >= 0 {
				t.Errorf("leak: the output of terraform %s contains %q: ...%s...", strings.Join(r.args, " "), n, excerpt(r.output, i))
			}
		}
	}
}

// copyExample copies the Terraform and policy files of src into dst: not
// what a terraform run in src may have left there (.terraform, state).
func copyExample(t *testing.T, src, dst string) {
	t.Helper()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dst, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, entry := range entries {
		name := entry.Name()
		if !entry.Type().IsRegular() || strings.HasPrefix(name, ".") ||
			(filepath.Ext(name) != ".tf" && filepath.Ext(name) != ".hcl") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dst, name), string(data))
	}
}

func absPath(t *testing.T, path string) string {
	t.Helper()
	abs, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}
