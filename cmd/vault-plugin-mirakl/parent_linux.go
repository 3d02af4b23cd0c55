package main

import (
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/hashicorp/go-hclog"
)

// exitWithParent has the kernel signal us when our parent dies
// (PR_SET_PDEATHSIG), and exits once getppid confirms it.
//
// The kernel signals us whenever the *thread* that is our parent ends, and
// hands us to another thread of the same process while one is left. Vault is
// Go: as it dies its threads end one by one, and a thread can end even while
// it lives (Go ends one when a goroutine locked to it returns). So a signal
// can come while getppid still names Vault; only the one that comes as we are
// handed to init (or a subreaper) changes it. Hence SIGUSR1, which Go programs
// ignore by default and no one sends a plugin: the early signals must be
// harmless, which rules out SIGKILL, and an operator's SIGTERM must still end
// the plugin, which rules out taking over SIGTERM.
func exitWithParent(logger hclog.Logger, ppid int) {
	armed := make(chan struct{})
	go func() {
		// The kernel keeps the setting on the thread that makes it and drops it
		// when that thread ends: this goroutine holds its thread for good.
		runtime.LockOSThread()
		died := make(chan os.Signal, 1)
		signal.Notify(died, syscall.SIGUSR1)
		_, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_PDEATHSIG, uintptr(syscall.SIGUSR1), 0)
		if errno != 0 {
			logger.Warn("cannot watch the parent process: the plugin would outlive a crashed Vault", "error", errno)
			signal.Stop(died)
			close(armed)
			return
		}
		// A parent that died before the prctl sent nothing.
		if os.Getppid() != ppid {
			parentGone(logger, ppid)
		}
		close(armed)
		for range died {
			if os.Getppid() != ppid {
				parentGone(logger, ppid)
			}
		}
	}()
	<-armed
}
