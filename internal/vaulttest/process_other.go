//go:build unix && !linux

package vaulttest

import (
	"os/exec"
	"strconv"
	"strings"
	"syscall"
)

// sysProcAttr puts the process in a group of its own, so that stopping it
// stops the plugins it started. These systems have no parent-death signal: a
// test binary that dies without cleaning up (a timeout panic) leaves its
// servers running.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// processes asks ps, for want of a /proc. Its comm column is the path the
// executable was started by on macOS (the file name alone on some BSDs, which
// ChildProcesses still matches), and comes last since it may hold spaces.
func processes() ([]proc, error) {
	out, err := exec.Command("ps", "-A", "-o", "pid=", "-o", "ppid=", "-o", "comm=").Output()
	if err != nil {
		return nil, err
	}
	var procs []proc
	for _, line := range strings.Split(string(out), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 3 {
			continue
		}
		pid, err1 := strconv.Atoi(fields[0])
		ppid, err2 := strconv.Atoi(fields[1])
		if err1 != nil || err2 != nil {
			continue
		}
		// The rest of the line after the two numbers, spaces and all.
		rest := strings.TrimSpace(line)
		for range 2 {
			rest = strings.TrimSpace(rest[strings.IndexAny(rest, " \t"):])
		}
		procs = append(procs, proc{pid: pid, ppid: ppid, exe: rest})
	}
	return procs, nil
}
