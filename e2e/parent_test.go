//go:build e2e && linux

package e2e

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/vaulttest"
)

// A Vault that crashes takes its plugin with it: the server is killed with
// SIGKILL, as a crash or `kill -9` would end it, and its plugin process, which
// nothing stops any more, exits on its own.
func TestParentKilled(t *testing.T) { forEachServer(t, testParentKilled) }

func testParentKilled(t *testing.T, kind vaulttest.Kind) {
	e := newEnvFor(t, kind, vaulttest.Options{})
	acme := e.newAccount("acme")
	e.mount("mirakl")
	e.configure("mirakl", acme)
	issuedBy(t, acme, readToken(t, e.root(), "mirakl").accessToken())

	pids := e.vault.PluginPIDs(t)
	if len(pids) == 0 {
		t.Fatalf("no %s process under vault (pid %d)", e.vault.Plugin().Command, e.vault.Process().PID())
	}
	started := make(map[int]string, len(pids))
	for _, pid := range pids {
		start, _, err := procStat(pid)
		if err != nil {
			t.Fatal(err)
		}
		started[pid] = start
	}

	server := e.vault.Process()
	// The server alone, not its process group, which would take the plugin too.
	if err := syscall.Kill(server.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the vault server to die", server.Exited)
	for _, pid := range pids {
		eventually(t, 10*time.Second, fmt.Sprintf("plugin process %d to exit once vault is gone", pid), func() bool {
			return exited(pid, started[pid])
		})
	}
}

// exited reports whether the process with this pid and start time has ended:
// /proc has no such pid, or a zombie (whoever adopted it has yet to reap it),
// or one started at another time (the pid was reused).
func exited(pid int, startTime string) bool {
	start, state, err := procStat(pid)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
		return true
	}
	return err == nil && (state == "Z" || state == "X" || start != startTime)
}

// procStat returns a process's start time and state from /proc/<pid>/stat.
func procStat(pid int) (start, state string, err error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", "", err
	}
	// pid (comm) state ppid ... starttime (the 22nd field); comm may hold
	// spaces and parentheses.
	rest := string(stat)
	if i := strings.LastIndexByte(rest, ')'); i >= 0 {
		rest = rest[i+1:]
	}
	fields := strings.Fields(rest)
	if len(fields) < 20 {
		return "", "", fmt.Errorf("/proc/%d/stat: unexpected %q", pid, stat)
	}
	return fields[19], fields[0], nil
}
