// Command mutate-hand applies the hand-written mutations of mutations.go to
// a copy of the module, one at a time, runs the unit tests against each, and
// prints which were caught. Where gremlins flips operators, these are the
// bugs a person writes: a dropped assignment, the wrong context, a field
// left out of a merge, a constant renamed, a check on one path only.
//
//	go run ./internal/cmd/mutate-hand [-run regexp] [-timeout 3m]
//
// With -soak it plants instead the bugs of planted.go, one per kind of
// promise the chaos soak (e2e/soak) judges: it builds the plugin with each and
// runs a short soak against it, which must fail that bug's invariant (`make
// soak-planted`; VAULT_BIN and PLUGIN_VERSION as for `make soak`).
//
// It never modifies the checkout. Not part of CI: minutes on two cores.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

func main() {
	only := flag.String("run", "", "apply only the mutations whose name matches this regexp")
	timeout := flag.Duration("timeout", 3*time.Minute, "limit on one mutant's test run")
	soak := flag.Bool("soak", false, "plant the bugs of planted.go, each under a short soak, instead")
	flag.Parse()
	filter := regexp.MustCompile(*only)

	root, err := os.Getwd()
	if err != nil {
		fail(err)
	}
	if *soak {
		plantAll(root, filter)
		return
	}
	caught, total := 0, 0
	var survivors []string
	for _, m := range mutations {
		if !filter.MatchString(m.name) {
			continue
		}
		total++
		verdict, detail := try(root, m, *timeout)
		switch verdict {
		case "caught", "timeout":
			caught++
		default: // survived; stale or not compiling: the mutation itself needs mending
			survivors = append(survivors, verdict+": "+m.name)
		}
		fmt.Printf("%-9s %-48s %s\n", verdict, m.name, detail)
	}
	fmt.Printf("\n%d of %d caught (%.0f%%)\n", caught, total, 100*float64(caught)/float64(max(total, 1)))
	for _, s := range survivors {
		fmt.Println(s)
	}
	if total > 0 && caught*10 < total*9 {
		os.Exit(1)
	}
}

// try copies the module, applies m, and runs the unit tests of the root
// package: "caught" if they fail, "timeout" if they hang, "survived" if they pass.
func try(root string, m mutation, timeout time.Duration) (verdict, detail string) {
	dir, err := os.MkdirTemp("", "mutate-hand-")
	if err != nil {
		fail(err)
	}
	defer func() { _ = os.RemoveAll(dir) }()
	if err := copyModule(root, dir); err != nil {
		fail(err)
	}
	if stale := apply(dir, edit{m.file, m.find, m.replace}); stale != "" {
		return "stale", stale
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "test", "-count=1", "-failfast", ".")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	switch {
	case ctx.Err() != nil:
		return "timeout", "tests did not finish within " + timeout.String()
	case err == nil:
		return "survived", m.why
	case strings.Contains(string(out), "[build failed]"):
		return "no-build", "the mutant does not compile: update mutations.go"
	default:
		return "caught", firstFailure(string(out))
	}
}

// apply makes e in the module copy at dir; it says why not when e's text
// does not appear exactly once (the mutation is stale).
func apply(dir string, e edit) (stale string) {
	path := filepath.Join(dir, e.file)
	src, err := os.ReadFile(path) //nolint:gosec // G304: a file of the module's own copy, named in mutations.go
	if err != nil {
		fail(err)
	}
	if n := strings.Count(string(src), e.find); n != 1 {
		return fmt.Sprintf("the text to mutate appears %d times in %s: update mutations.go or planted.go", n, e.file)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(string(src), e.find, e.replace, 1)), 0o600); err != nil { //nolint:gosec // G703: inside the temporary copy
		fail(err)
	}
	return ""
}

func firstFailure(out string) string {
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "--- FAIL") || strings.Contains(line, "build failed") {
			return strings.TrimSpace(line)
		}
	}
	return "tests failed"
}

// copyModule copies the module's Go files, go.mod, go.sum and testdata.
func copyModule(from, to string) error {
	return filepath.WalkDir(from, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, path)
		if d.IsDir() {
			if name := d.Name(); rel != "." && (strings.HasPrefix(name, ".") || name == "bin" || name == "dist" || name == "node_modules") {
				return filepath.SkipDir
			}
			return os.MkdirAll(filepath.Join(to, rel), 0o700)
		}
		if !strings.HasSuffix(path, ".go") && d.Name() != "go.mod" && d.Name() != "go.sum" && !strings.Contains(rel, "testdata") {
			return nil
		}
		data, err := os.ReadFile(path) //nolint:gosec // G304: the module's own files, walked from its root
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, rel), data, 0o600) //nolint:gosec // G703: into the temporary copy
	})
}

func fail(err error) {
	if errors.Is(err, fs.ErrNotExist) {
		err = fmt.Errorf("%w (run from the module root)", err)
	}
	fmt.Fprintln(os.Stderr, "mutate-hand:", err)
	os.Exit(2)
}
