//go:build !linux && !windows

package main

import (
	"os"
	"time"

	"github.com/hashicorp/go-hclog"
)

// exitWithParent polls the parent pid: a dead parent's children are adopted
// (by launchd or init), which changes it. Polling, because it works on every
// Unix (macOS has no parent-death signal); a second is prompt enough to stop
// a pile-up.
func exitWithParent(logger hclog.Logger, ppid int) {
	go func() {
		for range time.Tick(time.Second) {
			if os.Getppid() != ppid {
				parentGone(logger, ppid)
			}
		}
	}()
}
