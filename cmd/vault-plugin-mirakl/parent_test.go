package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// The watch is tested as Vault runs the plugin: the test starts a stand-in
// parent, which starts a stand-in plugin that calls exitWithParent, and then
// kills the parent. Both stand-ins are this test binary again, in the role
// that roleEnv names; they share the test's stdin and one output pipe.
const (
	roleEnv       = "MIRAKL_PARENT_TEST_ROLE"
	pluginRoleEnv = "MIRAKL_PARENT_TEST_PLUGIN_ROLE" // the role the parent gives the plugin

	roleMain       = "main" // the plugin itself: main, as Vault starts it (main_test.go)
	roleParent     = "parent"
	rolePlugin     = "plugin"      // watches its parent at once
	roleLatePlugin = "late-plugin" // reads its parent's pid, but watches only once stdin closes
)

// standInLife bounds how long a stand-in lives, should the test die first.
const standInLife = time.Minute

func init() {
	if os.Getenv(roleEnv) == roleParent {
		// Locked in init, main keeps the main thread, which Go never ends: the
		// thread that starts the plugin is then another one, and can end.
		runtime.LockOSThread()
	}
}

func TestMain(m *testing.M) {
	switch os.Getenv(roleEnv) {
	case "":
		os.Exit(m.Run())
	case roleMain:
		main()
		os.Exit(0)
	case roleParent:
		standInParent()
	case roleSubreaper:
		standInSubreaper()
	default:
		standInPlugin(os.Getenv(roleEnv))
	}
}

// standInParent starts the plugin, prints "plugin <pid>", and waits to be
// killed, printing "plugin exited: <status>" should the plugin end first.
// It starts the plugin from a thread that ends at a line on stdin: a parent's
// thread may end long before the parent.
func standInParent() {
	go func() {
		runtime.LockOSThread()          // never unlocked, so the thread ends with the goroutine
		cmd := exec.Command(os.Args[0]) //nolint:gosec // G702: the test binary re-executes itself
		cmd.Env = append(os.Environ(), roleEnv+"="+os.Getenv(pluginRoleEnv))
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stdout
		if err := cmd.Start(); err != nil {
			_, _ = os.Stdout.WriteString("starting the plugin: " + err.Error() + "\n")
			os.Exit(2)
		}
		_, _ = os.Stdout.WriteString("plugin " + strconv.Itoa(cmd.Process.Pid) + "\n")
		go func() {
			err := cmd.Wait()
			_, _ = os.Stdout.WriteString("plugin exited: " + fmt.Sprint(err) + "\n")
		}()
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	}()
	time.Sleep(standInLife)
	os.Exit(3)
}

// standInPlugin watches its parent as main does, prints "watching", and waits
// for the watch to end it.
func standInPlugin(role string) {
	logger := hclog.New(&hclog.LoggerOptions{Name: "stand-in", JSONFormat: true})
	ppid := os.Getppid()
	if role == roleLatePlugin {
		_, _ = os.Stdout.WriteString("waiting\n")
		_, _ = io.Copy(io.Discard, os.Stdin)
	}
	exitWithParent(logger, ppid)
	_, _ = os.Stdout.WriteString("watching\n")
	time.Sleep(standInLife)
	os.Exit(3)
}

func TestExitWithParent(t *testing.T) {
	t.Run("parent dies while watched", func(t *testing.T) {
		t.Parallel()
		s := startStandIns(t, rolePlugin)
		s.waitFor(t, "watching")
		// Longer than parent_other.go's poll: the plugin must not leave early.
		s.mustRun(t, 2500*time.Millisecond)
		s.killParent(t)
		s.waitPluginExit(t)
	})
	// As Vault's threads do, one by one, when it dies.
	t.Run("a thread of the living parent ends", func(t *testing.T) {
		t.Parallel()
		s := startStandIns(t, rolePlugin)
		s.waitFor(t, "watching")
		s.endForkingThread(t)
		s.mustRun(t, 2500*time.Millisecond)
		s.killParent(t)
		s.waitPluginExit(t)
	})
	t.Run("parent died before the watch began", func(t *testing.T) {
		t.Parallel()
		s := startStandIns(t, roleLatePlugin)
		s.waitFor(t, "waiting")
		s.killParent(t)
		s.stdin.Close() // lets the plugin begin its watch
		s.waitPluginExit(t)
	})
	// The watch must leave an operator's kill alone.
	t.Run("SIGTERM still ends the plugin", func(t *testing.T) {
		if runtime.GOOS == "windows" {
			t.Skip("no SIGTERM on Windows")
		}
		t.Parallel()
		s := startStandIns(t, rolePlugin)
		s.waitFor(t, "watching")
		plugin, err := os.FindProcess(s.pluginPID)
		if err != nil {
			t.Fatal(err)
		}
		if err := plugin.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if exit := s.waitFor(t, "plugin exited: "); exit != "plugin exited: signal: terminated" {
			t.Errorf("want the plugin ended by the signal, got %q; output:\n%s", exit, s.output())
		}
		s.pluginPID = 0
	})
}

type standIns struct {
	parent    *exec.Cmd
	pluginPID int
	stdin     *os.File      // a line ends the parent's forking thread; closing it lets a late plugin watch
	lines     chan string   // the stand-ins' output; closed when no one can write any more
	seen      []string      // lines read so far
	timeout   time.Duration // for every wait
	done      chan struct{} // closed when the test is over
}

func startStandIns(t *testing.T, pluginRole string) *standIns {
	t.Helper()
	return startStandInsAs(t, roleParent, pluginRole)
}

// startStandInsAs starts the test binary in role (the stand-in parent, or
// an ancestor that starts it) with pluginRole for the plugin.
func startStandInsAs(t *testing.T, role, pluginRole string) *standIns {
	t.Helper()
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	s := &standIns{stdin: stdinW, lines: make(chan string), timeout: 10 * time.Second, done: make(chan struct{})}
	s.parent = exec.Command(os.Args[0]) //nolint:gosec // G702: the test binary re-executes itself
	s.parent.Env = append(os.Environ(), roleEnv+"="+role, pluginRoleEnv+"="+pluginRole)
	s.parent.Stdin, s.parent.Stdout, s.parent.Stderr = stdinR, outW, outW
	err = s.parent.Start()
	// Only the stand-ins keep these ends, so that the output ends when they do.
	stdinR.Close()
	outW.Close()
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(outR)
		for sc.Scan() {
			select {
			case s.lines <- sc.Text():
			case <-s.done:
				return
			}
		}
		close(s.lines)
	}()
	t.Cleanup(func() {
		close(s.done)
		if s.pluginPID != 0 {
			if p, err := os.FindProcess(s.pluginPID); err == nil {
				_ = p.Kill() // a plugin the watch failed to end
			}
		}
		if s.parent.ProcessState == nil {
			_ = s.parent.Process.Kill()
			_ = s.parent.Wait()
		}
		stdinW.Close()
		outR.Close()
	})

	line := s.waitFor(t, "plugin ")
	s.pluginPID, err = strconv.Atoi(strings.TrimPrefix(line, "plugin "))
	if err != nil {
		t.Fatalf("the stand-in parent printed %q", line)
	}
	return s
}

// waitFor returns the first line that starts with prefix, reading more output as needed.
func (s *standIns) waitFor(t *testing.T, prefix string) string {
	t.Helper()
	deadline := time.After(s.timeout)
	what := strconv.Quote(prefix) + " from the stand-ins"
	for i := 0; ; i++ {
		if i == len(s.seen) && !s.readLine(t, deadline, what) {
			t.Fatalf("the stand-ins ended before printing %q; output:\n%s", prefix, s.output())
		}
		if strings.HasPrefix(s.seen[i], prefix) {
			return s.seen[i]
		}
	}
}

// readLine reads one more line of output, or reports its end. It fails the
// test at deadline.
func (s *standIns) readLine(t *testing.T, deadline <-chan time.Time, what string) bool {
	t.Helper()
	select {
	case line, ok := <-s.lines:
		if ok {
			s.seen = append(s.seen, line)
		}
		return ok
	case <-deadline:
		t.Fatalf("timed out after %s waiting for %s; output:\n%s", s.timeout, what, s.output())
		return false
	}
}

// mustRun fails the test if the plugin says anything or ends within d.
func (s *standIns) mustRun(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case line, ok := <-s.lines:
		if ok {
			s.seen = append(s.seen, line)
		}
		t.Fatalf("the plugin did not keep running while its parent lived; output:\n%s", s.output())
	case <-time.After(d):
	}
}

// endForkingThread ends the stand-in parent's thread that started the plugin.
func (s *standIns) endForkingThread(t *testing.T) {
	t.Helper()
	if _, err := s.stdin.WriteString("end the thread\n"); err != nil {
		t.Fatal(err)
	}
}

func (s *standIns) killParent(t *testing.T) {
	t.Helper()
	if err := s.parent.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = s.parent.Wait() // "killed", as asked
}

// waitPluginExit waits for the plugin to exit because its parent is gone.
func (s *standIns) waitPluginExit(t *testing.T) {
	t.Helper()
	s.waitOutputEnd(t, "the plugin (pid "+strconv.Itoa(s.pluginPID)+") to exit after its parent was killed")
	if !strings.Contains(s.output(), "parent process gone") {
		t.Errorf("the plugin exited without saying that its parent is gone; output:\n%s", s.output())
	}
}

// waitOutputEnd reads to the end of the output, which comes when the plugin,
// the last process to hold the pipe, has exited.
func (s *standIns) waitOutputEnd(t *testing.T, what string) {
	t.Helper()
	deadline := time.After(s.timeout)
	for s.readLine(t, deadline, what) {
	}
	s.pluginPID = 0
}

func (s *standIns) output() string { return strings.Join(s.seen, "\n") }
