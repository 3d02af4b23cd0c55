package vaulttest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// cliTimeout bounds one CLI command.
const cliTimeout = 2 * time.Minute

// Result is one finished CLI command.
type Result struct {
	Args           []string // what followed "vault" (or "bao")
	Stdout, Stderr string   // what it printed
	ExitCode       int      // 0 for success
}

// Output is stdout and stderr together, for messages and searches.
func (r *Result) Output() string { return r.Stdout + r.Stderr }

// CLI runs the server's binary (vault or bao) against one server as a user
// would, with VAULT_ADDR and VAULT_TOKEN set (and for bao BAO_ADDR and
// BAO_TOKEN, the names its documentation gives) and nothing else of the
// caller's Vault or OpenBao environment. Every command and its output is kept
// in the server's Transcript.
type CLI struct {
	server *Server
	token  string
	stdin  string
}

// CLI runs commands with the root token.
func (s *Server) CLI() *CLI { return &CLI{server: s, token: s.RootToken()} }

// CLIWithToken runs commands with the given token ("" for none).
func (s *Server) CLIWithToken(token string) *CLI { return &CLI{server: s, token: token} }

// WithStdin is the same CLI with stdin fed to every command, as a shell's
// `<<<"$VAR"` would (the caller adds the newline it appends).
func (c *CLI) WithStdin(stdin string) *CLI {
	with := *c
	with.stdin = stdin
	return &with
}

// Run runs `vault args...` (or `bao args...`) and returns what happened,
// whatever the exit code. It fails the test only when the command cannot be
// run at all.
func (c *CLI) Run(t testing.TB, args ...string) *Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.server.env.ServerBin, args...)
	cmd.Env = append(cleanEnv(),
		"VAULT_ADDR="+c.server.Addr,
		"VAULT_TOKEN="+c.token,
		// No token helper file, no colours, no pager.
		"HOME="+c.server.Opts.Dir,
		"NO_COLOR=1",
	)
	if c.server.env.Kind == OpenBao {
		cmd.Env = append(cmd.Env, "BAO_ADDR="+c.server.Addr, "BAO_TOKEN="+c.token)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Stdin = strings.NewReader(c.stdin)
	// Should anything the CLI started keep its output open, Run still returns.
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	r := &Result{Args: args, Stdout: stdout.String(), Stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("vaulttest: vault %s did not finish within %s; output so far:\n%s%s", strings.Join(args, " "), cliTimeout, r.Stdout, r.Stderr)
	case errors.As(err, &exit):
		r.ExitCode = exit.ExitCode()
	case err != nil:
		t.Fatalf("vaulttest: running %s %s: %v", c.command(), strings.Join(args, " "), err)
	}
	c.server.record(r)
	return r
}

// command is the binary's name for messages: vault or bao.
func (c *CLI) command() string { return c.server.env.Kind.Command() }

// MustRun runs `vault args...`, fails the test unless it exits 0, and
// returns its stdout.
func (c *CLI) MustRun(t testing.TB, args ...string) string {
	t.Helper()
	r := c.Run(t, args...)
	if r.ExitCode != 0 {
		t.Fatalf("%s %s: exit %d:\n%s", c.command(), strings.Join(args, " "), r.ExitCode, r.Output())
	}
	return r.Stdout
}

// MustRunJSON runs a command that prints JSON (pass -format=json in args),
// fails the test unless it exits 0, and decodes stdout into v.
func (c *CLI) MustRunJSON(t testing.TB, v any, args ...string) {
	t.Helper()
	out := c.MustRun(t, args...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("%s %s: output is not JSON (%v):\n%s", c.command(), strings.Join(args, " "), err, out)
	}
}

// MustFail runs `vault args...`, fails the test if it exits 0, and returns
// the result for checks on the message.
func (c *CLI) MustFail(t testing.TB, args ...string) *Result {
	t.Helper()
	r := c.Run(t, args...)
	if r.ExitCode == 0 {
		t.Fatalf("%s %s succeeded, want a failure:\n%s", c.command(), strings.Join(args, " "), r.Output())
	}
	return r
}

func (s *Server) record(r *Result) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.transcript = append(s.transcript, r)
}

// Transcript is every CLI command run against this server so far, in order.
func (s *Server) Transcript() []*Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*Result(nil), s.transcript...)
}
