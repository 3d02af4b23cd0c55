package main

import (
	"errors"
	"os"
	"syscall"

	"github.com/hashicorp/go-hclog"
)

// errorInvalidParameter (ERROR_INVALID_PARAMETER) is OpenProcess's answer for
// a process id that no longer runs.
const errorInvalidParameter = syscall.Errno(87)

// exitWithParent waits on a handle to the parent process: Windows never
// changes a process's parent id, even when the parent dies, so there is
// nothing to poll. (Were the parent to die before we open it and its id to be
// reused in that instant, we would wait on the wrong process.)
func exitWithParent(logger hclog.Logger, ppid int) {
	parent, err := os.FindProcess(ppid)
	switch {
	case errors.Is(err, errorInvalidParameter):
		parentGone(logger, ppid)
	case err != nil:
		logger.Warn("cannot watch the parent process: the plugin would outlive a crashed Vault", "error", err)
		return
	}
	go func() {
		if _, err := parent.Wait(); err != nil {
			logger.Warn("cannot watch the parent process: the plugin would outlive a crashed Vault", "error", err)
			return
		}
		parentGone(logger, ppid)
	}()
}
