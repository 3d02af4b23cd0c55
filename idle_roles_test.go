package mirakl

import (
	"bytes"
	"runtime"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// TestIdleRolesCostNothing is issue 25's "an idle role sends nothing and
// holds no goroutine", with 1,000 roles: two mounts, one with no role and
// one with 1,000 roles defined and never read, go through three token
// lifetimes of periodic calls, a minute apart, as Vault makes them. The
// mount with roles must send Mirakl exactly what the one without sends (its
// default token's), keep none of them in memory, and leave the process with
// no more goroutines than before the roles were written.
//
// Then every role is read once: each gets a token and, being read, one
// refresh ahead; once those successors expire unread, the periodic function
// forgets every role, and the next lifetime costs nothing again.
//
// Not parallel: it counts the process's goroutines.
func TestIdleRolesCostNothing(t *testing.T) {
	none := newTestEnv(t)
	many := newTestEnv(t, benchRoleAudiences(benchRoleCount))
	envs := []*testEnv{none, many}
	for _, e := range envs {
		e.Configure(map[string]any{"verify": false})
		e.MustReadToken()
	}
	before := takeGoroutineCount(envs)

	for i := 1; i <= benchRoleCount; i++ {
		resp, err := many.request(logical.CreateOperation, "roles/"+benchRoleName(i), map[string]any{
			"audience": benchRoleAudience(i), "verify": false,
		})
		requireOK(t, resp, err)
	}
	lifetimes := func(n int) {
		for range n * 60 {
			for _, e := range envs {
				e.clock.Advance(time.Minute)
				e.runPeriodic()
				e.settleRoles()
			}
		}
	}
	lifetimes(3)

	if got, want := many.fake.Requests(), none.fake.Requests(); got != want {
		t.Errorf("the mount with %d idle roles sent %d requests to Mirakl over three token lifetimes; the one without roles sent %d",
			benchRoleCount, got, want)
	}
	if got := loadedRoles(many.backend); got != 0 {
		t.Errorf("%d idle roles are in memory, want none", got)
	}
	after := requireGoroutinesBack(t, "1,000 idle roles and three token lifetimes of periodic calls", envs, before)
	t.Logf("with 1,000 idle roles defined vs none, after %d periodic calls each: requests to Mirakl %d vs %d; goroutines %d before the roles, %d after (engine's own: %d, %d); roles in memory: 0",
		3*60, many.fake.Requests(), none.fake.Requests(), before.total, after.total, before.engine, after.engine)

	// Every role read once: a token each, then one refresh ahead each.
	sent := many.fake.Requests()
	for i := 1; i <= benchRoleCount; i++ {
		resp, err := many.request(logical.ReadOperation, "token/"+benchRoleName(i), nil)
		requireOK(t, resp, err)
	}
	if got := loadedRoles(many.backend); got != benchRoleCount {
		t.Fatalf("%d roles in memory after reading each once, want %d", got, benchRoleCount)
	}
	lifetimes(2) // the read tokens' successors come and expire unread
	many.settleRoles()
	if got := loadedRoles(many.backend); got != 0 {
		t.Errorf("%d roles still in memory two token lifetimes after their one read, want none", got)
	}
	if got := many.fake.Requests() - sent; got != 2*benchRoleCount {
		t.Errorf("reading each role once cost %d requests, want %d: one for the read, one refresh ahead", got, 2*benchRoleCount)
	}
	sent = many.fake.Requests()
	lifetimes(1)
	if got := many.fake.Requests() - sent; got != 0 {
		t.Errorf("roles read once, then idle, sent %d requests in the next token lifetime, want none", got)
	}
	again := requireEngineGoroutinesBack(t, "1,000 roles read once, then forgotten", before)
	t.Logf("after reading each role once and two lifetimes: %d requests to Mirakl for the roles, roles in memory 0; engine's goroutines %d (before the roles: %d)",
		2*benchRoleCount, again, before.engine)
}

// loadedRoles counts the roles the backend holds in memory.
func loadedRoles(b *backend) int {
	mount := b.loadedMount()
	if mount == nil {
		return 0
	}
	n := 0
	mount.roles.each(func(*tokenSource) { n++ })
	return n
}

// settleRoles waits for the requests of the roles in memory to end.
func (e *testEnv) settleRoles() {
	e.t.Helper()
	if mount := e.backend.loadedMount(); mount != nil {
		mount.roles.each(func(src *tokenSource) {
			waitGroup(e.t, "role "+src.role+"'s requests to end", &src.cache.running)
		})
	}
}

// goroutineCount is the process's goroutines and, of those, the ones
// running or started by the engine (a frame or its creator in this package),
// along with the loopback connections open to the envs' fakes: each holds
// three goroutines in this process (the client's read and write loops, the
// server's connection), which belong to the HTTP pool, not to any role.
type goroutineCount struct {
	total, engine, connections int
}

func takeGoroutineCount(envs []*testEnv) goroutineCount {
	c := goroutineCount{total: runtime.NumGoroutine(), engine: engineGoroutines()}
	for _, e := range envs {
		c.connections += e.fake.OpenConnections()
	}
	return c
}

// enginePackage is how a frame of this package (not of internal/...) reads
// in a goroutine dump.
var enginePackage = []byte("vault-plugin-mirakl/vault-plugin-mirakl.")

// engineGoroutines counts the goroutines other than the caller's with a
// frame or a creator in this package: requests in flight, and any goroutine
// a role would hold. Paused parallel tests count too, alike before and after.
func engineGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	stacks := bytes.Split(buf, []byte("\n\n"))
	count := 0
	for _, stack := range stacks[1:] { // the first is the caller's
		if bytes.Contains(stack, enginePackage) {
			count++
		}
	}
	return count
}

// requireGoroutinesBack waits (up to waitDeadline) until the process has no
// more goroutines than before, allowing only those of loopback connections
// opened since, and no more of the engine's; it returns the count it saw.
func requireGoroutinesBack(t *testing.T, what string, envs []*testEnv, before goroutineCount) goroutineCount {
	t.Helper()
	deadline := time.Now().Add(waitDeadline)
	for {
		now := takeGoroutineCount(envs)
		allowed := before.total + 3*max(now.connections-before.connections, 0)
		if now.total <= allowed && now.engine <= before.engine {
			return now
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d goroutines (engine's own %d), want at most %d (engine's own %d) as before, with %d loopback connections then and %d now",
				what, now.total, now.engine, allowed, before.engine, before.connections, now.connections)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// requireEngineGoroutinesBack waits (up to waitDeadline) until the engine
// has no more goroutines than before; it returns the count it saw.
func requireEngineGoroutinesBack(t *testing.T, what string, before goroutineCount) int {
	t.Helper()
	deadline := time.Now().Add(waitDeadline)
	for {
		n := engineGoroutines()
		if n <= before.engine {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the engine holds %d goroutines, want at most %d as before the roles", what, n, before.engine)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
