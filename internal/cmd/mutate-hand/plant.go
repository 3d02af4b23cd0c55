package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

const module = "github.com/vault-plugin-mirakl/vault-plugin-mirakl"

// plantAll plants each bug of planted.go whose name matches filter, one at a
// time, runs its soak against Vault, and prints whether the soak failed the
// bug's invariant. The soaks' whole output stays in a directory it names.
func plantAll(root string, filter *regexp.Regexp) {
	for _, v := range []string{"VAULT_BIN", "PLUGIN_VERSION"} {
		if os.Getenv(v) == "" {
			fail(fmt.Errorf("%s is not set: run make soak-planted", v))
		}
	}
	logs, err := os.MkdirTemp("", "soak-planted-")
	if err != nil {
		fail(err)
	}
	caught, total := 0, 0
	var missed []string
	for _, p := range plantedBugs {
		if !filter.MatchString(p.name) {
			continue
		}
		total++
		fmt.Printf("planting %q (invariant %d): soak seed %d for %s ...\n", p.name, p.invariant, p.seed, p.duration)
		verdict, detail := plant(root, logs, p)
		if verdict == "caught" {
			caught++
		} else {
			missed = append(missed, verdict+": "+p.name)
		}
		fmt.Printf("%-8s invariant %d, %s: %s\n", verdict, p.invariant, p.name, detail)
	}
	fmt.Printf("\n%d of %d planted bugs caught by the soak; its reports are in %s\n", caught, total, logs)
	for _, m := range missed {
		fmt.Println(m)
	}
	if caught < total {
		os.Exit(1)
	}
}

// plant builds the plugin from a copy of the module with p's edits and runs
// p's soak on it: "caught" when the report fails p's invariant.
func plant(root, logs string, p plantedBug) (verdict, detail string) {
	dir, err := os.MkdirTemp("", "soak-planted-module-")
	if err != nil {
		fail(err)
	}
	defer func() { _ = os.RemoveAll(dir) }()
	if err := copyModule(root, dir); err != nil {
		fail(err)
	}
	for _, e := range p.edits {
		if stale := apply(dir, e); stale != "" {
			return "stale", stale
		}
	}
	bin := filepath.Join(dir, "vault-plugin-mirakl")
	build := exec.CommandContext(context.Background(), "go", "build", "-trimpath", "-buildvcs=false", //nolint:gosec // G204: our own build, of our own copy
		"-ldflags", "-X "+module+".Version="+os.Getenv("PLUGIN_VERSION"), "-o", bin, "./cmd/vault-plugin-mirakl")
	build.Dir = dir
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return "no-build", "the planted bug does not compile: update planted.go: " + firstLine(string(out))
	}

	soak := exec.CommandContext(context.Background(), "go", "test", "-count=1", "-tags", "soak", "-v", "-run", "^TestSoak$", //nolint:gosec // G204: the soak of this checkout
		"-timeout", (p.duration + 20*time.Minute).String(), "./e2e/soak/")
	soak.Dir = root
	soak.Env = append(os.Environ(), "PLUGIN_BIN="+bin, "SOAK_KINDS=vault", "SOAK_RUN=", "SOAK_ALLOW=",
		"SOAK_SEED="+strconv.FormatUint(p.seed, 10), "SOAK_DURATION="+p.duration.String())
	out, _ := soak.CombinedOutput() // a soak that fails is what we want: the report says how
	logPath := filepath.Join(logs, strings.ReplaceAll(p.name, " ", "-")+".log")
	if err := os.WriteFile(logPath, out, 0o600); err != nil {
		fail(err)
	}
	failed, first := failedInvariants(string(out))
	if len(failed) == 0 && !strings.Contains(string(out), "==== soak report") {
		return "no-run", "the soak made no report: see " + logPath
	}
	others := slices.DeleteFunc(slices.Clone(failed), func(n int) bool { return n == p.invariant })
	also := ""
	if len(others) > 0 {
		also = fmt.Sprintf(" (also failed: invariants %v)", others)
	}
	if !slices.Contains(failed, p.invariant) {
		return "missed", "the soak did not fail it" + also + ": " + p.why
	}
	return "caught", shorten(first[p.invariant], 400) + also
}

// shorten keeps the first n bytes of s: a violation can list every request
// of an outage window, and the whole report is in the log.
func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + " ..."
}

var invariantLine = regexp.MustCompile(`^\s*invariant (\d) \(.*; (\d+) violations: FAIL\s*$`)

// failedInvariants reads the soak's report: the invariants it failed, and
// for each its count and first violation (from its time, "t+...", to its
// "nearest fault": an error quoted in it may span lines).
func failedInvariants(out string) (failed []int, first map[int]string) {
	first = map[int]string{}
	current := 0
	var violation []string
	for line := range strings.SplitSeq(out, "\n") {
		if strings.Contains(line, "invariant ") && strings.Contains(line, " violations: ") {
			current, violation = 0, nil
			if m := invariantLine.FindStringSubmatch(line); m != nil {
				current, _ = strconv.Atoi(m[1])
				failed = append(failed, current)
				first[current] = m[2] + " violations"
			}
			continue
		}
		text := strings.TrimSpace(line)
		if current == 0 || text == "" || (violation == nil && !strings.HasPrefix(text, "t+")) {
			continue // notes come before the violations, each of which starts with its time
		}
		violation = append(violation, text)
		if strings.Contains(line, "nearest fault") {
			first[current] += "; first: " + strings.Join(violation, " ")
			current = 0
		}
	}
	return failed, first
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}
