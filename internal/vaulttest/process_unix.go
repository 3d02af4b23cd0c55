//go:build unix

package vaulttest

import (
	"errors"
	"syscall"
)

// killGroup sends SIGKILL to the process group, which outlives its leader
// while children (plugins) remain in it, and waits for the process to end.
func (p *Process) killGroup() {
	err := syscall.Kill(-p.PID(), syscall.SIGKILL)
	if err != nil && !errors.Is(err, syscall.ESRCH) && !p.Exited() {
		_ = p.cmd.Process.Kill()
	}
	<-p.done
}
