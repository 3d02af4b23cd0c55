package main

import (
	"os"

	"github.com/hashicorp/go-hclog"
)

// A plugin process must not outlive the Vault that started it. Vault stops
// its plugins when it shuts down, but one killed or crashed leaves them
// running, and Vault's systemd unit (KillMode=process) leaves them too: a
// crash-looping Vault piles them up. So the plugin watches its parent, the
// only process that talks to it, and exits when it is gone: exitWithParent,
// in parent_linux.go, parent_windows.go and parent_other.go.
//
// The watch begins from the parent pid read first thing in main. A parent
// that died even before that is not seen by the watch, but on Unix the
// go-plugin handshake then writes to a pipe no one reads, and SIGPIPE ends us.

// parentGone says why the plugin exits, and exits.
func parentGone(logger hclog.Logger, ppid int) {
	// Vault reads our stderr: when Vault is the parent that is gone, this line
	// goes nowhere (and the failed write's SIGPIPE ends us just the same). It
	// shows where stderr outlives the parent.
	logger.Info("parent process gone, exiting", "parent_pid", ppid)
	os.Exit(0)
}
