//go:build !linux

package main

import "os"

// roleSubreaper is Linux's (PR_SET_CHILD_SUBREAPER); elsewhere the role
// is never given.
const roleSubreaper = "subreaper"

func standInSubreaper() { os.Exit(2) }
