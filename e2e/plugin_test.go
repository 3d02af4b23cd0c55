//go:build e2e

package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/vaulttest"
)

// The README's first session: register, enable, configure, read a token.
func TestRegisterEnableConfigureRead(t *testing.T) { forEachServer(t, testRegisterEnableConfigureRead) }

func testRegisterEnableConfigureRead(t *testing.T, server vaulttest.Kind) {
	e := newEnvFor(t, server, vaulttest.Options{})
	acme := e.newAccount("acme")
	cli := e.root()
	p := e.vault.Plugin()

	cli.MustRun(t, "plugin", "register", "-sha256="+p.SHA256, "-version="+p.Version, "-command="+p.Command, "secret", "mirakl")
	cli.MustRun(t, "secrets", "enable", "-path=mirakl", "mirakl")

	t.Run("plugin info shows the version", func(t *testing.T) {
		out := cli.MustRun(t, "plugin", "info", "-version="+p.Version, "secret", "mirakl")
		for _, want := range []string{p.Version, p.SHA256, p.Command} {
			if !strings.Contains(out, want) {
				t.Errorf("vault plugin info: no %q in:\n%s", want, out)
			}
		}
		var mounts map[string]struct {
			Type                 string `json:"type"`
			PluginVersion        string `json:"plugin_version"`
			RunningPluginVersion string `json:"running_plugin_version"`
		}
		cli.MustRunJSON(t, &mounts, "secrets", "list", "-detailed", "-format=json")
		m, ok := mounts["mirakl/"]
		if !ok {
			t.Fatalf("vault secrets list: no mirakl/ in %v", mounts)
		}
		if m.Type != "mirakl" || m.PluginVersion != p.Version || m.RunningPluginVersion != p.Version {
			t.Errorf("mirakl/ mount: type %q, plugin_version %q, running_plugin_version %q; want mirakl and %s (the plugin's RunningVersion)",
				m.Type, m.PluginVersion, m.RunningPluginVersion, p.Version)
		}
	})

	e.configure("mirakl", acme)

	t.Run("config read hides the secret", func(t *testing.T) {
		checkConfig(t, cli, "mirakl", acme, "after the write")
	})

	expiresIn := 3599 // the fake's default, as Mirakl's
	var first string
	t.Run("vault read mirakl/token", func(t *testing.T) {
		out := cli.MustRun(t, "read", "mirakl/token")
		fields := tableFields(out)
		for _, key := range []string{"lease_id", "lease_duration", "lease_renewable", "access_token", "token_type", "expires_in", "expires_at"} {
			if _, ok := fields[key]; !ok {
				t.Errorf("no %s in:\n%s", key, out)
			}
		}
		if fields["lease_renewable"] != "true" || fields["token_type"] != "Bearer" {
			t.Errorf("lease_renewable %q, token_type %q:\n%s", fields["lease_renewable"], fields["token_type"], out)
		}
		if !strings.HasPrefix(fields["lease_id"], "mirakl/token/") {
			t.Errorf("lease_id %q", fields["lease_id"])
		}
		first = fields["access_token"]
		issuedBy(t, acme, first)
	})

	t.Run("vault read -format=json mirakl/token", func(t *testing.T) {
		tok := readToken(t, cli, "mirakl")
		if tok.accessToken() != first {
			t.Errorf("second read: token %q, want the cached %q", tok.accessToken(), first)
		}
		if !tok.Renewable {
			t.Error("renewable: false")
		}
		if tok.Data["token_type"] != "Bearer" {
			t.Errorf("token_type %v", tok.Data["token_type"])
		}
		if got := int(tok.Data["expires_in"].(float64)); got != tok.LeaseDuration {
			t.Errorf("data.expires_in %d != lease_duration %d", got, tok.LeaseDuration)
		}
		// Against what the fake recorded when it issued the token, not against
		// now: a busy machine cannot move it.
		issuedAt, _ := acme.fake.IssuedAt(first)
		expiresAt, err := time.Parse(time.RFC3339, tok.Data["expires_at"].(string))
		if err != nil {
			t.Fatalf("expires_at: %v", err)
		}
		if want := issuedAt.Add(time.Duration(expiresIn) * time.Second); expiresAt.Before(want.Add(-time.Second)) || expiresAt.After(want.Add(time.Second)) {
			t.Errorf("expires_at %s, want the issue time plus expires_in, %s", expiresAt, want)
		}
		if tok.LeaseDuration > expiresIn || tok.LeaseDuration < 1 {
			t.Errorf("lease_duration %d, want at most the fake's expires_in %d", tok.LeaseDuration, expiresIn)
		}
		if n := acme.fake.Stats().Issued; n != 1 {
			t.Errorf("the fake issued %d tokens for a config write and two reads, want 1 (cached)", n)
		}

		var renewed struct {
			LeaseID       string   `json:"lease_id"`
			LeaseDuration int      `json:"lease_duration"`
			Warnings      []string `json:"warnings"`
		}
		cli.MustRunJSON(t, &renewed, "lease", "renew", "-format=json", tok.LeaseID)
		if renewed.LeaseID != tok.LeaseID || renewed.LeaseDuration < 1 || renewed.LeaseDuration > tok.LeaseDuration || len(renewed.Warnings) != 0 {
			t.Errorf("vault lease renew: %+v, want the time the token has left (at most %ds) and no warning", renewed, tok.LeaseDuration)
		}
		if left := time.Until(expiresAt); time.Duration(renewed.LeaseDuration)*time.Second > left+time.Second {
			t.Errorf("a renewal outlives the token: lease %ds, token %s left", renewed.LeaseDuration, left)
		}
	})

	t.Run("vault path-help", func(t *testing.T) {
		for path, wants := range map[string][]string{
			"mirakl/token":       {"Get a Mirakl Connect Bearer token.", "min_ttl", "never past the\ntoken's expiry"},
			"mirakl/status":      {"Show how the engine is doing with Mirakl", "fingerprint"},
			"mirakl/config":      {"Configure the Mirakl Connect credentials", "client_secret", "write-only", "token_url"},
			"mirakl/roles/acme":  {"Manage a role: an audience", "audience", "verify", "holds back that role's\nonly"},
			"mirakl/roles/":      {"List the roles"},
			"mirakl/token/acme":  {"Get a role's Mirakl Connect Bearer token", "min_ttl", "A lease remembers its role"},
			"mirakl/status/acme": {"Show how one role's token is doing", "audience_refused"},
		} {
			out := cli.MustRun(t, "path-help", path)
			for _, want := range wants {
				if !strings.Contains(out, want) {
					t.Errorf("vault path-help %s: no %q in:\n%s", path, want, out)
				}
			}
		}
	})

	t.Run("OpenAPI lists the paths", func(t *testing.T) {
		secret, err := e.vault.Client(t).Logical().Read("sys/internal/specs/openapi")
		if err != nil {
			t.Fatal(err)
		}
		paths, _ := secret.Data["paths"].(map[string]any)
		for path, op := range map[string]string{
			"/mirakl/config": "post", "/mirakl/token": "get",
			"/mirakl/roles/{name}": "post", "/mirakl/roles/": "get", "/mirakl/token/{name}": "get", "/mirakl/status/{name}": "get",
		} {
			item, ok := paths[path].(map[string]any)
			if !ok {
				t.Errorf("OpenAPI document has no %s; paths: %s", path, keys(paths))
				continue
			}
			if _, ok := item[op]; !ok {
				t.Errorf("OpenAPI %s has no %s operation: %s", path, op, mustJSON(item))
			}
		}
	})
}

// tableFields parses the CLI's "Key   Value" table.
func tableFields(out string) map[string]string {
	fields := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		parts := strings.Fields(line)
		if len(parts) == 2 {
			fields[parts[0]] = parts[1]
		}
	}
	return fields
}

func keys(m map[string]any) string {
	var ks []string
	for k := range m {
		if strings.Contains(k, "mirakl") {
			ks = append(ks, k)
		}
	}
	return strings.Join(ks, ", ")
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
