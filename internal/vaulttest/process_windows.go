package vaulttest

import (
	"errors"
	"syscall"
)

// sysProcAttr is the default: Windows has no process group that a kill
// reaches. The plugin notices its parent's death on its own (see
// cmd/vault-plugin-mirakl/parent_windows.go).
func sysProcAttr() *syscall.SysProcAttr { return nil }

// killGroup kills the process alone, for want of process groups, and waits
// for it to end.
func (p *Process) killGroup() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// processes is not implemented: Windows has neither /proc nor ps, and the
// end-to-end tests run on Linux and macOS.
func processes() ([]proc, error) {
	return nil, errors.New("not supported on windows")
}
