package vaulttest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

// Kind is the server a test runs the plugin in: HashiCorp Vault, or OpenBao,
// its open-source fork. Both take the same CLI verbs, dev flags and API and
// load the same plugin binary; what differs is the binary, the environment
// variables its CLI reads (OpenBao reads BAO_* as well as VAULT_*), and how
// a file audit device is enabled (OpenBao 2.x refuses `audit enable` through
// the API by default and reads audit devices from its config file instead).
type Kind int

const (
	// Vault is HashiCorp Vault: $VAULT_BIN.
	Vault Kind = iota
	// OpenBao is OpenBao 2.x: $BAO_BIN, or bao on PATH.
	OpenBao
)

// Kinds are the servers the harness knows, Vault first.
func Kinds() []Kind { return []Kind{Vault, OpenBao} }

// String is the kind's name in test names and messages: vault or openbao.
func (k Kind) String() string {
	switch k {
	case Vault:
		return "vault"
	case OpenBao:
		return "openbao"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Command is the name of the kind's binary, which users type before every
// CLI command: vault or bao.
func (k Kind) Command() string {
	if k == OpenBao {
		return "bao"
	}
	return "vault"
}

// StandbysRunPlugins reports whether the standbys of a raft cluster mount
// the secrets engines, and so run a plugin process each. Vault Community
// Edition's do not: they forward every request to the active node. OpenBao
// 2.x's serve reads themselves (disable_standby_reads = false, its default,
// on raft), so they mount every engine; a plugin path marked
// ForwardPerformanceStandby, as every path of this plugin is, is still
// forwarded to the active node.
func (k Kind) StandbysRunPlugins() bool { return k == OpenBao }

// The environment variables that choose OpenBao.
const (
	// envBaoBin is the bao binary. When it is not set, a bao on PATH is used.
	envBaoBin = "BAO_BIN"
	// envRequireOpenBao, when set to 1 (as .ci/run does), makes a missing bao
	// a failure rather than a reason to skip the OpenBao tests.
	envRequireOpenBao = "MIRAKL_REQUIRE_OPENBAO"
)

// HowToRunOpenBao is what a skipped OpenBao test says.
const HowToRunOpenBao = "no OpenBao: neither " + envBaoBin + " is set nor bao on PATH; " +
	"run `make test-e2e BAO_BIN=/path/to/bao` (OpenBao 2.x) to run this test against OpenBao too"

// OpenBaoAvailable reports whether the OpenBao tests can run here: whether
// $BAO_BIN, or else a bao on PATH, is there. It fails the test (rather than
// report false) when BAO_BIN is set but is not an executable file, and when
// MIRAKL_REQUIRE_OPENBAO=1 and no bao can be found: in CI the OpenBao tests
// run, never skip. A caller that gets false skips with HowToRunOpenBao.
func OpenBaoAvailable(t testing.TB) bool {
	t.Helper()
	bin, err := openBaoBin()
	switch {
	case err != nil:
		t.Fatalf("vaulttest: %v", err)
	case bin == "" && os.Getenv(envRequireOpenBao) == "1":
		t.Fatalf("vaulttest: %s=1 but %s", envRequireOpenBao, HowToRunOpenBao)
	}
	return bin != ""
}

// openBaoBin is the absolute path of $BAO_BIN, or else of a bao on PATH, or
// "" when there is neither. A BAO_BIN that is not an executable file is an
// error, never a reason to look elsewhere.
func openBaoBin() (string, error) {
	if bin := os.Getenv(envBaoBin); bin != "" {
		return executable(envBaoBin, bin)
	}
	bin, err := exec.LookPath("bao")
	switch {
	case errors.Is(err, exec.ErrNotFound):
		return "", nil
	case err != nil:
		return "", fmt.Errorf("looking for bao on PATH: %w", err)
	}
	return executable("bao on PATH", bin)
}

// executable is the absolute path of p, named by what in messages, or an
// error unless it is an executable file.
func executable(what, p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("%s=%s: %w", what, p, err)
	}
	info, err := os.Stat(abs)
	switch {
	case err != nil:
		return "", fmt.Errorf("%s: %s is not an executable file: %w", what, abs, err)
	case info.IsDir() || info.Mode()&0o111 == 0:
		return "", fmt.Errorf("%s: %s is not an executable file (mode %s)", what, abs, info.Mode())
	}
	return abs, nil
}
