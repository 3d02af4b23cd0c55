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

// Process is a long-running child (vault server, vault agent, ...) in its own
// process group, with stdout and stderr appended to LogPath.
type Process struct {
	Name    string // for messages, such as "vault server"
	LogPath string

	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
	logFile *os.File

	stopOnce sync.Mutex
}

// StartProcess starts bin with args and env (nil: a clean copy of the
// test's environment), appending its output to logPath. The process and every
// child it starts (Vault's plugins) are stopped on t.Cleanup.
func StartProcess(t testing.TB, name, logPath string, env []string, bin string, args ...string) *Process {
	t.Helper()
	return startProcess(t, t, name, logPath, env, bin, args...)
}

// startProcess reports failures to t but ties the process to owner, which
// may be a parent of t: a server restarted in a subtest must outlive it.
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
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Its own group, so that stopping it stops the plugins it started.
		Setpgid: true,
		// If the test binary dies without cleaning up (timeout panic), do not
		// leave a server behind.
		Pdeathsig: syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		t.Fatalf("vaulttest: starting %s: %v", name, err)
	}
	p := &Process{Name: name, LogPath: logPath, cmd: cmd, done: make(chan struct{}), logFile: logFile}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	owner.Cleanup(func() {
		p.Stop()
		p.logFile.Close()
		if owner.Failed() {
			owner.Logf("vaulttest: last lines of the %s log (%s):\n%s", name, logPath, TailFile(logPath, 40))
		}
		copyLogForCI(owner, logPath)
	})
	return p
}

// PID is the process id (and process group id).
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

// Done is closed when the process has ended.
func (p *Process) Done() <-chan struct{} { return p.done }

// ExitError is the process's exit status once it ended (nil while it runs or
// after a clean exit).
func (p *Process) ExitError() error {
	if !p.Exited() {
		return nil
	}
	return p.waitErr
}

// Stop asks the process to exit with SIGTERM, waits up to 15s, then kills its
// whole process group. It is safe to call more than once.
func (p *Process) Stop() {
	p.stopOnce.Lock()
	defer p.stopOnce.Unlock()
	if !p.Exited() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(stopGrace):
		}
	}
	p.killGroup()
}

// Kill sends SIGKILL to the process group and waits for the process to end.
func (p *Process) Kill() {
	p.stopOnce.Lock()
	defer p.stopOnce.Unlock()
	p.killGroup()
}

func (p *Process) killGroup() {
	// The group outlives its leader while children (plugins) remain in it.
	err := syscall.Kill(-p.PID(), syscall.SIGKILL)
	if err != nil && !errors.Is(err, syscall.ESRCH) && !p.Exited() {
		_ = p.cmd.Process.Kill()
	}
	<-p.done
}

// cleanEnv is the test's environment without VAULT_* variables, so that a
// developer's own Vault settings never leak into a test.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "VAULT_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// TailFile returns the last n lines of a file, or a note why it cannot.
func TailFile(path string, n int) string {
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
	dir := os.Getenv(EnvLogDir)
	if dir == "" {
		return
	}
	dest := filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_"))
	if err := os.MkdirAll(dest, 0o755); err != nil {
		t.Logf("vaulttest: %s: %v", EnvLogDir, err)
		return
	}
	src, err := os.Open(logPath)
	if err != nil {
		return
	}
	defer src.Close()
	out, err := os.Create(filepath.Join(dest, filepath.Base(logPath)))
	if err != nil {
		t.Logf("vaulttest: %s: %v", EnvLogDir, err)
		return
	}
	_, copyErr := io.Copy(out, src)
	if err := errors.Join(copyErr, out.Close()); err != nil {
		t.Logf("vaulttest: copying %s to %s: %v", logPath, dest, err)
	}
}
