package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every mutation still applies: its text appears exactly once in its file.
// A refactor that moves the text makes the mutation stale, and the bug it
// stands for untested; this says so in `make test`, not only in mutate-hand.
func TestEveryMutationApplies(t *testing.T) {
	root := filepath.Join("..", "..", "..")
	names := map[string]bool{}
	for _, m := range mutations {
		if names[m.name] {
			t.Errorf("two mutations are named %q", m.name)
		}
		names[m.name] = true
		src, err := os.ReadFile(filepath.Join(root, m.file))
		if err != nil {
			t.Errorf("%s: %v", m.name, err)
			continue
		}
		if n := strings.Count(string(src), m.find); n != 1 {
			t.Errorf("%s: its text appears %d times in %s", m.name, n, m.file)
		}
	}
}
