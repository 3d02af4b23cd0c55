package main

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// roleSubreaper: a stand-in for systemd --user or tini -s, which take over
// orphans instead of init: the plugin's new parent is then not pid 1.
const roleSubreaper = "subreaper"

// prSetChildSubreaper is PR_SET_CHILD_SUBREAPER (linux/prctl.h), which the
// syscall package does not name.
const prSetChildSubreaper = 36

// standInSubreaper adopts the orphans of its descendants, starts the
// stand-in parent (which starts the plugin), prints "parent <pid>", and
// reaps whatever ends.
func standInSubreaper() {
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); errno != 0 {
		_, _ = os.Stdout.WriteString("prctl: " + errno.Error() + "\n")
		os.Exit(2)
	}
	cmd := exec.Command(os.Args[0]) //nolint:gosec // G702: the test binary re-executes itself
	cmd.Env = append(os.Environ(), roleEnv+"="+roleParent)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stdout
	if err := cmd.Start(); err != nil {
		_, _ = os.Stdout.WriteString("starting the parent: " + err.Error() + "\n")
		os.Exit(2)
	}
	_, _ = os.Stdout.WriteString("parent " + strconv.Itoa(cmd.Process.Pid) + "\n")
	deadline := time.Now().Add(standInLife)
	for time.Now().Before(deadline) {
		var status syscall.WaitStatus
		if _, err := syscall.Wait4(-1, &status, 0, nil); err != nil {
			time.Sleep(100 * time.Millisecond)
		}
	}
	os.Exit(3)
}

// Under a subreaper, a plugin whose parent died is adopted by it, not by
// init: the watch must see the parent change, not look for pid 1.
func TestExitWithParentUnderASubreaper(t *testing.T) {
	t.Parallel()
	s := startStandInsAs(t, roleSubreaper, rolePlugin)
	line := s.waitFor(t, "parent ")
	parentPID, err := strconv.Atoi(strings.TrimPrefix(line, "parent "))
	if err != nil {
		t.Fatalf("the subreaper printed %q", line)
	}
	s.waitFor(t, "watching")
	parent, err := os.FindProcess(parentPID)
	if err != nil {
		t.Fatal(err)
	}
	if err := parent.Kill(); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(s.timeout)
	for i := 0; !strings.Contains(s.output(), "parent process gone"); i++ {
		if !s.readLine(t, deadline, "the plugin to say its parent is gone") {
			t.Fatalf("the stand-ins ended first; output:\n%s", s.output())
		}
	}
	s.pluginPID = 0 // it said so, and exits
}
