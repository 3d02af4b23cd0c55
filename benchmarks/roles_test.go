//go:build bench

package benchmarks

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/fakemirakl"
	"github.com/vault-plugin-mirakl/vault-plugin-mirakl/internal/vaulttest"
)

// Roles at scale (issue 25): one mount with 1,000 roles, on a plugin process
// of its own, so that its memory is that mount's alone. The in-process side
// (the engine's read path and the periodic function) is the root package's
// bench_roles_test.go.
const (
	roleCount = 1000
	// The same plugin binary, installed under another file name and
	// registered under another name: Vault starts a process per plugin.
	rolesPluginName    = "mirakl-roles"
	rolesPluginCommand = "vault-plugin-mirakl-roles"
	rolesMount         = "mirakl-roles"
	// Role writes and first reads go this many at a time.
	roleWorkers = 8
	// The plugin's resident set is sampled this many times, this far apart,
	// and the median kept: a figure from one instant would catch the Go
	// heap mid-collection.
	rssSamples  = 5
	rssInterval = 400 * time.Millisecond

	goalRoleRatio     = 1.1 // the 1,000th role's cached read against the first's, and against the noop read
	goalRoleMemoryKiB = 16  // plugin memory per role with a cached token
)

func roleName(i int) string     { return fmt.Sprintf("role-%04d", i) }
func roleAudience(i int) string { return fmt.Sprintf("company-%04d", i) }

// measureRoles fills one mount with 1,000 roles, each with a cached token,
// reports the plugin process's memory per role, then compares cached reads
// of the 1,000th role, of the first and of the noop plugin, interleaved round
// by round as measureReads does, at one client.
func measureRoles(t *testing.T, ctx context.Context, srv *vaulttest.Server, root *api.Client, token string, rep *report) {
	registerPluginCopy(t, srv, root, rolesPluginName, rolesPluginCommand)
	audiences := []string{""}
	for i := 1; i <= roleCount; i++ {
		audiences = append(audiences, roleAudience(i))
	}
	fake := fakemirakl.New(benchClientID, benchClientSecret, fakemirakl.WithAudiences(audiences...))
	t.Cleanup(fake.Close)
	mustDo(t, "enabling "+rolesMount, root.Sys().Mount(rolesMount, &api.MountInput{Type: rolesPluginName}))
	configure(t, root, rolesMount, fake, nil) // verified: the default token is cached
	reader := srv.ClientWithToken(t, token)
	if _, err := reader.Logical().ReadWithContext(ctx, rolesMount+"/token"); err != nil {
		t.Fatalf("reading %s/token: %v", rolesMount, err)
	}
	pid := onlyProcess(t, srv, rolesPluginCommand)

	// Memory: the resident set with no role, with 1,000 defined and none
	// read, and with each read once (a cached token each).
	noRoles := settledRSS(t, pid)
	inParallel(t, roleCount, func(i int) error {
		_, err := root.Logical().WriteWithContext(ctx, rolesMount+"/roles/"+roleName(i), map[string]any{
			"audience": roleAudience(i), "verify": false,
		})
		return err
	})
	defined := settledRSS(t, pid)
	before := fake.Requests()
	inParallel(t, roleCount, func(i int) error {
		secret, err := reader.Logical().ReadWithContext(ctx, rolesMount+"/token/"+roleName(i))
		if err == nil {
			err = requireLease(secret)
		}
		return err
	})
	filled := settledRSS(t, pid)
	if got := fake.Requests() - before; got != roleCount {
		t.Errorf("the first read of each of %d roles made %d requests to Mirakl", roleCount, got)
	}
	perRole := float64(filled-noRoles) / roleCount // KiB
	rep.add("Roles: plugin memory per role with a cached token, 1,000 roles on one mount (a plugin process of its own)",
		fmt.Sprintf("%.1f KiB per role = (RSS with 1,000 roles read once %s − RSS with no role %s) / 1,000; 1,000 roles defined and never read: %s (%+d KiB); "+
			"VmRSS of the plugin process, median of %d samples %s apart, no forced GC (the Go heap's headroom included)",
			perRole, mib(filled), mib(noRoles), mib(defined), defined-noRoles, rssSamples, rssInterval),
		fmt.Sprintf("≤ %d KiB per role", goalRoleMemoryKiB), verdict(perRole <= goalRoleMemoryKiB))

	// Reads: the noop floor, the first role and the 1,000th, interleaved.
	targets := []target{
		{name: "noop plugin", path: "noop/token", observe: requireLease, command: noopCommand},
		{name: "first role", path: rolesMount + "/token/" + roleName(1), observe: requireLease, command: rolesPluginCommand},
		{name: "1,000th role", path: rolesMount + "/token/" + roleName(roleCount), observe: requireLease, command: rolesPluginCommand},
	}
	before = fake.Requests()
	results := interleavedReads(t, ctx, srv, readers(t, srv, token, 1), targets)
	if got := fake.Requests() - before; got != 0 {
		t.Errorf("cached role reads made %d requests to Mirakl; the cache did not hold", got)
	}
	sums := make(map[string]summary)
	for _, tg := range targets {
		sums[tg.name] = summarize(results[tg.name].merged())
		rep.add("Roles, Vault, 1 client: "+tg.name+" read ("+tg.path+")",
			sums[tg.name].String()+" ("+strconv.Itoa(sums[tg.name].reads)+" reads); CPU per read "+sums[tg.name].cpuString(), "", verdictNone)
	}
	noop, first, last := targets[0].name, targets[1].name, targets[2].name
	goal := fmt.Sprintf("≤ %.1fx in p50, time per read and CPU per read", goalRoleRatio)
	for _, pair := range [][2]string{{last, first}, {last, noop}} {
		r := compare(sums[pair[0]], sums[pair[1]])
		met := r.p50 <= goalRoleRatio && r.perRead <= goalRoleRatio && r.cpu <= goalRoleRatio
		rep.add("Roles, Vault, 1 client: "+pair[0]+" / "+pair[1], r.String()+"; p50 per round "+
			spread(roundRatios(results[pair[0]], results[pair[1]]), func(r ratio) float64 { return r.p50 }), goal, verdict(met))
	}
	if v := fake.Violations(); len(v) > 0 {
		t.Errorf("the fake Mirakl saw requests that Mirakl would refuse: %v", v)
	}
}

// interleavedReads warms each target, then runs rounds of one stretch per
// target at len(clients) clients, in an order that rotates each round, with
// the CPU of Vault and of the target's plugin process.
func interleavedReads(t *testing.T, ctx context.Context, srv *vaulttest.Server, clients []*api.Client, targets []target) map[string]*series {
	results := make(map[string]*series)
	for _, tg := range targets {
		results[tg.name] = &series{}
		if st := readFor(ctx, clients, tg.path, warmupLength, 0, tg.observe); st.failures > 0 {
			t.Fatalf("warming %s: %d reads failed: %v", tg.path, st.failures, st.firstErr)
		}
	}
	for round := range rounds {
		for i := range targets {
			tg := targets[(i+round)%len(targets)]
			vault, plugin := srv.Process().PID(), onlyProcess(t, srv, tg.command)
			vaultBefore, pluginBefore := cpuTime(vault), cpuTime(plugin)
			st := readFor(ctx, clients, tg.path, stretchLength, 0, tg.observe)
			st.vaultCPU, st.pluginCPU = cpuTime(vault)-vaultBefore, cpuTime(plugin)-pluginBefore
			if st.failures > 0 {
				t.Errorf("%s: %d of %d reads failed: %v", tg.path, st.failures, st.failures+st.reads(), st.firstErr)
			}
			results[tg.name].add(st)
		}
	}
	return results
}

// registerPluginCopy installs the plugin binary again as command and
// registers it as name, same version: Vault runs it in a process of its own.
func registerPluginCopy(t *testing.T, srv *vaulttest.Server, root *api.Client, name, command string) {
	t.Helper()
	p := srv.Plugin()
	data, err := os.ReadFile(filepath.Join(srv.PluginDir, p.Command))
	if err != nil {
		t.Fatal(err)
	}
	installed := filepath.Join(srv.PluginDir, command)
	if err := os.WriteFile(installed, data, 0o755); err != nil {
		t.Fatal(err)
	}
	sum, err := vaulttest.FileSHA256(installed)
	if err != nil {
		t.Fatal(err)
	}
	mustDo(t, "registering "+name, root.Sys().RegisterPlugin(&api.RegisterPluginInput{
		Name: name, Type: api.PluginTypeSecrets, Command: command, SHA256: sum, Version: p.Version,
	}))
}

// inParallel calls f(1..n), roleWorkers at a time, and fails the test on the
// first error.
func inParallel(t *testing.T, n int, f func(i int) error) {
	t.Helper()
	next := make(chan int)
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	for range roleWorkers {
		wg.Go(func() {
			for i := range next {
				if err := f(i); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("%d: %w", i, err)
					}
					mu.Unlock()
				}
			}
		})
	}
	for i := 1; i <= n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		t.Fatalf("role %v", firstErr)
	}
}

// settledRSS is the median of rssSamples readings of a process's VmRSS (KiB).
func settledRSS(t *testing.T, pid int) int {
	t.Helper()
	samples := make([]int, rssSamples)
	for i := range samples {
		time.Sleep(rssInterval)
		_, samples[i] = memoryKiB(t, pid)
	}
	slices.Sort(samples)
	return samples[len(samples)/2]
}
