package vaulttest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// stopGrace is how long a process gets to exit after SIGTERM before SIGKILL.
const stopGrace = 15 * time.Second

// Process is a long-running child (vault server, bao agent, ...) in its own
// process group (on unix), with stdout and stderr appended to LogPath.
type Process struct {
	// LogPath is the file that receives its stdout and stderr.
	LogPath string

	name    string // for messages, such as "vault server"
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
	logFile *os.File

	stopOnce sync.Mutex
}

// startProcess starts bin with args and env (nil: a clean copy of the test's
// environment), appending its output to logPath. It reports failures to t but
// ties the process to owner, which may be a parent of t: a server restarted
// in a subtest must outlive it. The process and every child it starts
// (Vault's plugins) are stopped on owner's Cleanup.
func startProcess(t, owner testing.TB, name, logPath string, env []string, bin string, args ...string) *Process {
	t.Helper()
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatalf("vaulttest: opening the log of %s: %v", name, err)
	}
	fmt.Fprintf(logFile, "==== vaulttest %s: %s %s\n", time.Now().Format(time.RFC3339Nano), bin, strings.Join(args, " "))

	cmd := exec.Command(bin, args...)
	cmd.Env = env
	if cmd.Env == nil {
		cmd.Env = cleanEnv()
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		logFile.Close()
		t.Fatalf("vaulttest: starting %s: %v", name, err)
	}
	p := &Process{name: name, LogPath: logPath, cmd: cmd, done: make(chan struct{}), logFile: logFile}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	owner.Cleanup(func() {
		p.stop()
		p.logFile.Close()
		if owner.Failed() {
			owner.Logf("vaulttest: last lines of the %s log (%s):\n%s", name, logPath, tailFile(logPath, 40))
		}
		copyLogForCI(owner, logPath)
	})
	return p
}

// PID is the process id (and, on unix, process group id).
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// ExitError is the process's exit status once it ended (nil while it runs or
// after a clean exit).
func (p *Process) ExitError() error {
	if !p.Exited() {
		return nil
	}
	return p.waitErr
}

// stop asks the process to exit with SIGTERM, waits up to stopGrace, then
// kills its whole process group. It is safe to call more than once.
func (p *Process) stop() {
	p.stopOnce.Lock()
	defer p.stopOnce.Unlock()
	// Windows cannot deliver SIGTERM: nothing to wait for, straight to the kill.
	if !p.Exited() && p.cmd.Process.Signal(syscall.SIGTERM) == nil {
		select {
		case <-p.done:
		case <-time.After(stopGrace):
		}
	}
	p.killGroup()
}

// kill kills the process group and waits for the process to end.
func (p *Process) kill() {
	p.stopOnce.Lock()
	defer p.stopOnce.Unlock()
	p.killGroup()
}

// proc is one running process as the system lists it.
type proc struct {
	pid, ppid int
	exe       string // argv[0], the path the executable was started by
}

// ChildProcesses lists the children of parent whose executable has the given
// file name.
func ChildProcesses(parent int, name string) ([]int, error) {
	return matchingProcesses(func(p proc) bool { return p.ppid == parent && filepath.Base(p.exe) == name })
}

// ProcessesIn lists the processes, children of anyone, whose executable lies
// in dir: a plugin directory's processes outlive a server killed alone.
func ProcessesIn(dir string) ([]int, error) {
	prefix := filepath.Clean(dir) + string(filepath.Separator)
	return matchingProcesses(func(p proc) bool { return strings.HasPrefix(p.exe, prefix) })
}

func matchingProcesses(match func(proc) bool) ([]int, error) {
	all, err := processes()
	if err != nil {
		return nil, fmt.Errorf("listing processes: %w", err)
	}
	var pids []int
	for _, p := range all {
		if match(p) {
			pids = append(pids, p.pid)
		}
	}
	return pids, nil
}

// cleanEnv is the test's environment without VAULT_* and BAO_* variables,
// so that a developer's own Vault or OpenBao settings never leak into a test
// (bao reads both).
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "VAULT_") || strings.HasPrefix(kv, "BAO_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// tailFile returns the last n lines of a file, or a note why it cannot.
func tailFile(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// copyLogForCI copies a log into $VAULTTEST_LOG_DIR/<test name>/, if set.
func copyLogForCI(t testing.TB, logPath string) {
	dir := os.Getenv(envLogDir)
	if dir == "" {
		return
	}
	dest := filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_"))
	if err := os.MkdirAll(dest, 0o755); err != nil {
		t.Logf("vaulttest: %s: %v", envLogDir, err)
		return
	}
	src, err := os.Open(logPath)
	if err != nil {
		return
	}
	defer src.Close()
	out, err := os.Create(filepath.Join(dest, filepath.Base(logPath)))
	if err != nil {
		t.Logf("vaulttest: %s: %v", envLogDir, err)
		return
	}
	_, copyErr := io.Copy(out, src)
	if err := errors.Join(copyErr, out.Close()); err != nil {
		t.Logf("vaulttest: copying %s to %s: %v", logPath, dest, err)
	}
}
