package mirakl

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/fakemirakl"
	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/noopplugin"
)

// The scale figures of roles (issue 25), in-process like bench_test.go's:
// one mount with 1,000 roles, each with a cached token. They report figures
// and ratios, never assert one; scripts/bench.sh puts them in its table.
// The real-Vault side (the plugin process's memory per role, and the role
// read against the no-op plugin through Vault) is benchmarks/roles_test.go.

// benchRoleCount is the number of roles of the scale figures.
const benchRoleCount = 1000

// benchRoleName is the i-th role (1-based); names sort in creation order.
func benchRoleName(i int) string { return fmt.Sprintf("role-%04d", i) }

// benchRoleAudience is the i-th role's audience: each role a company of its own.
func benchRoleAudience(i int) string { return fmt.Sprintf("company-%04d", i) }

// benchRoleAudiences tells the fake every audience that roles 1..n and the
// default token (none) send.
func benchRoleAudiences(n int) fakemirakl.Option {
	audiences := []string{""}
	for i := 1; i <= n; i++ {
		audiences = append(audiences, benchRoleAudience(i))
	}
	return fakemirakl.WithAudiences(audiences...)
}

// defineRoles writes roles from..to as Vault's router sends a first write
// (a create), unverified: defining a role sends nothing to Mirakl.
func (m *benchMount) defineRoles(tb testing.TB, from, to int) {
	tb.Helper()
	before := m.fake.Requests()
	for i := from; i <= to; i++ {
		resp, err := m.request(logical.CreateOperation, "roles/"+benchRoleName(i), map[string]any{
			"audience": benchRoleAudience(i), "verify": false,
		})
		if err != nil || resp.IsError() {
			tb.Fatalf("writing role %d: %v %v", i, resp, err)
		}
	}
	if got := m.fake.Requests() - before; got != 0 {
		tb.Fatalf("defining roles unverified sent %d requests", got)
	}
}

// readRole reads mirakl/token/<name> and says what went wrong, if anything.
func (m *benchMount) readRole(name string) error {
	resp, err := m.request(logical.ReadOperation, "token/"+name, nil)
	switch {
	case err != nil:
		return err
	case resp == nil || resp.Secret == nil:
		return fmt.Errorf("no lease in %#v", resp)
	case resp.IsError():
		return resp.Error()
	}
	return nil
}

// readRoles reads the token of roles from..to once each.
func (m *benchMount) readRoles(tb testing.TB, from, to int) {
	tb.Helper()
	for i := from; i <= to; i++ {
		if err := m.readRole(benchRoleName(i)); err != nil {
			tb.Fatalf("reading role %d: %v", i, err)
		}
	}
}

// loadedRoles is how many roles the mount holds in memory.
func (m *benchMount) loadedRoles() int { return loadedRoles(m.backend) }

// periodic is one call of the periodic function as Vault makes it: a
// rollback request through the framework (about once a minute).
func (m *benchMount) periodic() error {
	_, err := m.backend.HandleRequest(context.Background(), &logical.Request{
		Operation: logical.RollbackOperation, Storage: m.storage, MountPoint: "mirakl/",
	})
	return err
}

// benchReadBlock is how many reads of one path are timed together: the
// clock is read twice per block, not per read.
const benchReadBlock = 32

// BenchmarkRoleReadCached1000 reads, on one mount with 1,000 roles each
// holding a cached token, the 1,000th role's token, the first role's and the
// default token; the only role of a mount with one role (a cost that every
// role of a big mount paid alike would show there); and the no-op plugin's
// constant (the in-process floor of a leased read, internal/noopplugin); in
// blocks that rotate their order every iteration, so that a busy machine
// slows all five alike. Its figures are the time of one read of each (ns/op
// is one iteration of the five blocks and means nothing alone) and the
// ratios of the 1,000th role's read to the others.
func BenchmarkRoleReadCached1000(b *testing.B) {
	m := newBenchMountOn(b, time.Now, benchRoleAudiences(benchRoleCount))
	m.defineRoles(b, 1, benchRoleCount)
	m.mustReadToken(b)
	m.readRoles(b, 1, benchRoleCount)
	if got := m.loadedRoles(); got != benchRoleCount {
		b.Fatalf("%d roles in memory after reading %d", got, benchRoleCount)
	}
	single := newBenchMountOn(b, time.Now, benchRoleAudiences(1))
	single.defineRoles(b, 1, 1)
	single.readRoles(b, 1, 1)
	noop, noopStorage := newNoopBackend(b)
	first, last := benchRoleName(1), benchRoleName(benchRoleCount)

	type target struct {
		name  string
		read  func() error
		total time.Duration
	}
	targets := []*target{
		{name: "noop", read: func() error { return readNoop(noop, noopStorage) }},
		{name: "default", read: m.readToken},
		{name: "first", read: func() error { return m.readRole(first) }},
		{name: "1000th", read: func() error { return m.readRole(last) }},
		{name: "alone", read: func() error { return single.readRole(first) }},
	}
	for _, tg := range targets { // warm every path before any figure
		for range benchReadBlock {
			if err := tg.read(); err != nil {
				b.Fatalf("reading %s: %v", tg.name, err)
			}
		}
	}
	allocs := testing.AllocsPerRun(100, func() {
		if err := m.readRole(last); err != nil {
			b.Fatalf("reading %s: %v", last, err)
		}
	})
	before := m.fake.Requests() + single.fake.Requests()
	m.calls.Reset()

	iterations := 0
	for b.Loop() {
		for k := range targets {
			tg := targets[(k+iterations)%len(targets)]
			start := time.Now()
			for range benchReadBlock {
				if err := tg.read(); err != nil {
					b.Fatalf("reading %s: %v", tg.name, err)
				}
			}
			tg.total += time.Since(start)
		}
		iterations++
	}
	b.StopTimer()
	if got := m.fake.Requests() + single.fake.Requests() - before; got != 0 {
		b.Fatalf("cached reads made %d requests to the fakes", got)
	}
	// Three of the targets read through the 1,000-role mount.
	mountReads := 3 * iterations * benchReadBlock
	perRead := make(map[string]float64)
	for _, tg := range targets {
		perRead[tg.name] = float64(tg.total.Nanoseconds()) / float64(iterations*benchReadBlock)
		b.ReportMetric(perRead[tg.name], tg.name+"-ns/read")
	}
	b.ReportMetric(allocs, "1000th-allocs/read")
	b.ReportMetric(float64(m.calls.Total())/float64(mountReads), "vault-calls/read")
	b.ReportMetric(perRead["1000th"]/perRead["first"], "1000th/first")
	b.ReportMetric(perRead["1000th"]/perRead["noop"], "1000th/noop")
	b.ReportMetric(perRead["1000th"]/perRead["default"], "1000th/default")
	b.ReportMetric(perRead["1000th"]/perRead["alone"], "1000th/alone")
}

// newNoopBackend is the no-op plugin's engine, set up as bench_test.go's mount.
func newNoopBackend(tb testing.TB) (logical.Backend, logical.Storage) {
	tb.Helper()
	config := logical.TestBackendConfig()
	config.StorageView = &logical.InmemStorage{}
	backend, err := noopplugin.Factory(context.Background(), config)
	if err != nil {
		tb.Fatal(err)
	}
	return backend, config.StorageView
}

func readNoop(b logical.Backend, s logical.Storage) error {
	resp, err := b.HandleRequest(context.Background(), &logical.Request{
		Operation: logical.ReadOperation, Path: "token", Storage: s, MountPoint: "noop/",
	})
	switch {
	case err != nil:
		return err
	case resp == nil || resp.Secret == nil:
		return fmt.Errorf("no lease in %#v", resp)
	}
	return nil
}

// BenchmarkPeriodicRoles times one call of the periodic function, made as
// Vault makes it (a rollback request through the framework), on mounts whose
// default token was read once and that have:
//
//   - idle: 10 roles on one mount and 1,000 on another, defined and never
//     read, so none is in memory: calls on both, in blocks that alternate,
//     report ns/periodic-10 and ns/periodic-1000 and their ratio;
//   - read=1000: 1,000 roles whose tokens were read and are still valid, none
//     due for refresh: the work that grows with the roles in use;
//   - expired=1000: 1,000 roles read once whose tokens then expired: the one
//     call that forgets them all (ns/periodic) and the call after it
//     (ns/next-periodic); ns/op there includes reading the 1,000 roles again.
func BenchmarkPeriodicRoles(b *testing.B) {
	b.Run("idle", benchPeriodicIdle)
	b.Run("read=1000", benchPeriodicInUse)
	b.Run("expired=1000", benchPeriodicForget)
}

// newPeriodicBenchMount is a mount on a test clock with n roles defined and
// its default token read once.
func newPeriodicBenchMount(b *testing.B, n int) (*benchMount, *testClock) {
	clock := &testClock{now: time.Date(2026, 11, 28, 11, 0, 0, 0, time.UTC)}
	m := newBenchMountOn(b, clock.Now, benchRoleAudiences(n))
	m.defineRoles(b, 1, n)
	m.mustReadToken(b)
	return m, clock
}

// benchPeriodicBlock is how many periodic calls are timed together.
const benchPeriodicBlock = 64

func benchPeriodicIdle(b *testing.B) {
	few, _ := newPeriodicBenchMount(b, 10)
	many, _ := newPeriodicBenchMount(b, benchRoleCount)
	mounts := []*benchMount{few, many}
	totals := make([]time.Duration, len(mounts))
	before := few.fake.Requests() + many.fake.Requests()
	iterations := 0
	for b.Loop() {
		for k := range mounts {
			i := (k + iterations) % len(mounts)
			start := time.Now()
			for range benchPeriodicBlock {
				if err := mounts[i].periodic(); err != nil {
					b.Fatal(err)
				}
			}
			totals[i] += time.Since(start)
		}
		iterations++
	}
	b.StopTimer()
	for _, m := range mounts {
		if got := m.loadedRoles(); got != 0 {
			b.Fatalf("%d idle roles in memory, want none", got)
		}
	}
	if got := few.fake.Requests() + many.fake.Requests() - before; got != 0 {
		b.Fatalf("the periodic calls sent %d requests", got)
	}
	perCall := func(i int) float64 {
		return float64(totals[i].Nanoseconds()) / float64(iterations*benchPeriodicBlock)
	}
	b.ReportMetric(perCall(0), "ns/periodic-10")
	b.ReportMetric(perCall(1), "ns/periodic-1000")
	b.ReportMetric(perCall(1)/perCall(0), "1000/10")
}

func benchPeriodicInUse(b *testing.B) {
	m, _ := newPeriodicBenchMount(b, benchRoleCount)
	m.readRoles(b, 1, benchRoleCount)
	before := m.fake.Requests()
	calls := 0
	for b.Loop() {
		if err := m.periodic(); err != nil {
			b.Fatal(err)
		}
		calls++
	}
	b.StopTimer()
	if got := m.loadedRoles(); got != benchRoleCount {
		b.Fatalf("%d roles in memory, want %d", got, benchRoleCount)
	}
	if got := m.fake.Requests() - before; got != 0 {
		b.Fatalf("the periodic calls sent %d requests", got)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(calls), "ns/periodic")
}

// benchPeriodicForget: each iteration reads the 1,000 roles (each fetches a
// token), lets their tokens expire with no periodic call in between, and
// times the periodic call that forgets them, then the one after it.
func benchPeriodicForget(b *testing.B) {
	m, clock := newPeriodicBenchMount(b, benchRoleCount)
	var forget, next time.Duration
	calls := 0
	for b.Loop() {
		m.readRoles(b, 1, benchRoleCount)
		if got := m.loadedRoles(); got != benchRoleCount {
			b.Fatalf("%d roles in memory after reading %d", got, benchRoleCount)
		}
		clock.Advance(2 * time.Hour) // the fake's tokens live an hour
		start := time.Now()
		if err := m.periodic(); err != nil {
			b.Fatal(err)
		}
		forget += time.Since(start)
		if got := m.loadedRoles(); got != 0 {
			b.Fatalf("%d roles in memory after the periodic call, want 0: expired tokens keep nothing", got)
		}
		start = time.Now()
		if err := m.periodic(); err != nil {
			b.Fatal(err)
		}
		next += time.Since(start)
		calls++
	}
	b.StopTimer()
	b.ReportMetric(float64(forget.Nanoseconds())/float64(calls), "ns/periodic")
	b.ReportMetric(float64(next.Nanoseconds())/float64(calls), "ns/next-periodic")
}

// BenchmarkRoleMemory is the engine's memory per role with a cached token,
// in-process: 1,000 roles are read once on a first backend (their tokens
// fetched and stored), which then goes, as a plugin process does; each
// iteration then starts a new backend on the same storage and reads the
// 1,000 roles again, each served its stored token with no request, so that
// neither the fake's records nor the storage grow while it measures. After
// a GC before and after those reads, it reports the live heap per role
// (runtime.MemStats.HeapAlloc) and the process's resident set per role:
// VmRSS from /proc/self/status after debug.FreeOSMemory where there is one
// (Linux), else the Go runtime's memory taken from the system (Sys minus
// HeapReleased), which says so in its unit.
func BenchmarkRoleMemory(b *testing.B) {
	m := newBenchMountOn(b, time.Now, benchRoleAudiences(benchRoleCount))
	m.defineRoles(b, 1, benchRoleCount)
	m.readRoles(b, 1, benchRoleCount)
	cleanupWithin(b, m.backend)
	requests := m.fake.Requests()

	var heap, resident float64
	residentUnit := ""
	iterations := 0
	for b.Loop() {
		node := m.newNode(b)
		heapBefore, residentBefore, unit := memoryNow()
		node.readRoles(b, 1, benchRoleCount)
		heapAfter, residentAfter, _ := memoryNow()
		if got := node.loadedRoles(); got != benchRoleCount {
			b.Fatalf("%d roles in memory after reading %d", got, benchRoleCount)
		}
		cleanupWithin(b, node.backend)
		heap += float64(heapAfter) - float64(heapBefore)
		resident += float64(residentAfter) - float64(residentBefore)
		residentUnit = unit
		iterations++
	}
	b.StopTimer()
	if got := m.fake.Requests() - requests; got != 0 {
		b.Fatalf("reading roles with stored tokens made %d requests", got)
	}
	roles := float64(iterations * benchRoleCount)
	b.ReportMetric(heap/roles, "heap-B/role")
	b.ReportMetric(resident/roles, residentUnit)
}

// newNode is another backend on the mount's storage: the next plugin process.
func (m *benchMount) newNode(tb testing.TB) *benchMount {
	tb.Helper()
	config := logical.TestBackendConfig()
	config.StorageView = m.storage
	config.Logger = hclog.NewNullLogger()
	b, err := newBackend(context.Background(), config, m.backend.now)
	if err != nil {
		tb.Fatal(err)
	}
	return &benchMount{backend: b, storage: m.storage, fake: m.fake, calls: m.calls}
}

// memoryNow is, after a GC that returns freed memory to the system, the live
// heap and the process's resident memory in bytes, with the unit that names
// how the latter was read.
func memoryNow() (heap, resident uint64, unit string) {
	debug.FreeOSMemory()
	var stats runtime.MemStats
	runtime.ReadMemStats(&stats)
	if kib, ok := vmRSSKiB(); ok {
		return stats.HeapAlloc, kib * 1024, "rss-B/role"
	}
	return stats.HeapAlloc, stats.Sys - stats.HeapReleased, "go-sys-B/role"
}

// vmRSSKiB reads VmRSS from /proc/self/status, where there is one.
func vmRSSKiB() (uint64, bool) {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(status), "\n") {
		if value, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			fields := strings.Fields(value)
			if len(fields) == 0 {
				return 0, false
			}
			kib, err := strconv.ParseUint(fields[0], 10, 64)
			return kib, err == nil
		}
	}
	return 0, false
}
