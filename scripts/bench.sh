#!/usr/bin/env bash
# Runs every benchmark and prints one markdown table: the in-process Go
# benchmarks of the engine (go test -bench, root package and the noop floor;
# bench_roles_test.go: a mount with 1,000 roles, the periodic function and
# memory per role), then the real-Vault benchmarks (benchmarks/, build tag
# bench): kv1 / noop plugin / mirakl interleaved, 1,000 roles on a plugin
# process of their own, upstream economy, startup and memory.
#
# The table goes to stdout and to bin/bench-results.md (bin/ is not tracked).
# Everything runs on loopback; figures are noisy on a busy machine, which is
# why the real-Vault part compares reads side by side, round by round.
# A figure that misses its goal is marked **MISSED**; that is reported, not a
# failure. The script fails only when a benchmark cannot run.
#
# Usage: make bench   (builds bin/vault-plugin-mirakl first)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

plugin_bin="$root/bin/vault-plugin-mirakl"
[[ -x "$plugin_bin" ]] || { echo "bench: $plugin_bin is missing: run make bench (or make build first)" >&2; exit 1; }
vault_bin="$(scripts/vault-bin.sh)"
version="$(cat VERSION)"
out="$root/bin/bench-results.md"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

started=$SECONDS
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"

echo "== in-process: go test -bench (engine through HandleRequest; noop floor)" >&2
go test -run '^$' -bench . -benchmem -count=1 . ./internal/noopplugin/ | tee "$work/inprocess.txt" >&2

echo "== real Vault: go test -tags bench ./benchmarks/ (about a minute)" >&2
BENCH_ROWS="$work/vault-rows.md" VAULT_BIN="$vault_bin" PLUGIN_BIN="$plugin_bin" PLUGIN_VERSION="$version" \
	go test -tags bench -run '^TestVaultBenchmarks$' -count=1 -v -timeout 15m ./benchmarks/ | tee "$work/vault.txt" >&2

# One row per in-process benchmark. Fields come in value-unit pairs after the
# name and the iteration count: ns/op, vault-calls/op, B/op, allocs/op.
inprocess_rows() {
	awk '
	function describe(name) {
		if (name == "BenchmarkTokenReadCached")         return "In-process: cached token read (HandleRequest)"
		if (name == "BenchmarkTokenReadCachedParallel") return "In-process: cached token read, all cores in parallel"
		if (name == "BenchmarkTokenReadCold")           return "In-process: cold token read (cache dropped; fake Mirakl on loopback)"
		if (name == "BenchmarkNoopRead")                return "In-process: noop plugin read (the floor, same SDK)"
		if (name == "BenchmarkCountCachedRead")         return "In-process: counting one cached read for mirakl/metrics (part of the cached read above)"
		if (name == "BenchmarkCountCachedReadParallel") return "In-process: counting one cached read, all cores in parallel"
		if (name == "BenchmarkRoleReadCached1000")      return "In-process: cached role read, one mount with 1,000 roles each holding a token (reads interleaved)"
		if (name == "BenchmarkRoleMemory")              return "In-process: memory per role with a cached token, 1,000 roles (after a GC)"
		if (name == "BenchmarkPeriodicRoles/idle")      return "In-process: one periodic call (a rollback request, as Vault makes it), 10 vs 1,000 idle roles (defined, never read; calls interleaved)"
		if (name == "BenchmarkPeriodicRoles/read=1000") return "In-process: one periodic call, 1,000 roles in use (read, tokens valid, none due)"
		if (name == "BenchmarkPeriodicRoles/expired=1000") return "In-process: the periodic call that forgets 1,000 roles read once whose tokens expired; the call after it"
		return name
	}
	function kib(bytes) { return sprintf("%.1f KiB", bytes / 1024) }
	function met(ok) { return ok ? "met" : "**MISSED**" }
	# The role benchmarks (bench_roles_test.go) report their own figures (ns/op
	# is an iteration of several timed parts there): one row each, and the
	# ratios with their goals, after the other in-process rows.
	function roles_rows(name,    calls, floor, ratio, resident, unit) {
		floor = value["BenchmarkNoopRead", "vault-calls/op"]
		if (name == "BenchmarkRoleReadCached1000") {
			calls = value[name, "vault-calls/read"]
			printf "| %s | 1,000th role %s · first role %s · default token %s · the only role of a one-role mount %s · noop plugin %s (per read); %g allocs per role read; calls into Vault/read: %g | calls into Vault (each a gRPC round trip in a real plugin) ≤ the noop read'"'"'s %g | %s |\n", describe(name),
				took(value[name, "1000th-ns/read"]), took(value[name, "first-ns/read"]), took(value[name, "default-ns/read"]), took(value[name, "alone-ns/read"]), took(value[name, "noop-ns/read"]),
				value[name, "1000th-allocs/read"], calls, floor, met(calls + 0 <= floor + 0)
			ratio = value[name, "1000th/first"]
			printf "| In-process: 1,000th role / first role, cached reads | %.2fx (1,000th role / the only role of a one-role mount: %.2fx) | ≤ %.1fx | %s |\n", ratio, value[name, "1000th/alone"], goal_roles, met(ratio + 0 <= goal_roles)
			printf "| In-process: 1,000th role / noop plugin read (the in-process floor) | %.2fx (1,000th role / default token: %.2fx) | none in-process, where the default token'"'"'s read is not held to the floor either: the ≤ %.1fx goal is held through Vault (Roles rows below) |  |\n",
				value[name, "1000th/noop"], value[name, "1000th/default"], goal_roles
			return 1
		}
		if (name == "BenchmarkRoleMemory") {
			resident = value[name, "rss-B/role"]; unit = "process RSS (VmRSS after debug.FreeOSMemory)"
			if (resident == "") { resident = value[name, "go-sys-B/role"]; unit = "Go runtime memory from the OS (no /proc)" }
			printf "| %s | live heap %s per role; %s %s per role; the roles read their stored tokens on a new backend, so neither the fake nor storage grows meanwhile | none here: the ≤ 16 KiB goal is held on the plugin process'"'"'s RSS (Roles rows below) |  |\n", describe(name), kib(value[name, "heap-B/role"]), unit, kib(resident)
			return 1
		}
		if (name == "BenchmarkPeriodicRoles/idle") {
			ratio = value[name, "1000/10"]
			printf "| %s | 10 roles %s · 1,000 roles %s · 1,000 / 10 = %.2fx | ≤ %.1fx: the work grows with the roles in use, not the roles defined | %s |\n", describe(name),
				took(value[name, "ns/periodic-10"]), took(value[name, "ns/periodic-1000"]), ratio, goal_roles, met(ratio + 0 <= goal_roles)
			return 1
		}
		if (name == "BenchmarkPeriodicRoles/read=1000") {
			printf "| %s | %s per call (%s per role in use) |  |  |\n", describe(name), took(value[name, "ns/periodic"]), took(value[name, "ns/periodic"] / 1000)
			return 1
		}
		if (name == "BenchmarkPeriodicRoles/expired=1000") {
			printf "| %s | %s, then %s |  |  |\n", describe(name), took(value[name, "ns/periodic"]), took(value[name, "ns/next-periodic"])
			return 1
		}
		return 0
	}
	function took(ns) {
		if (ns >= 1000000) return sprintf("%.2f ms", ns / 1000000)
		if (ns >= 1000)    return sprintf("%.2f µs", ns / 1000)
		return sprintf("%d ns", ns)
	}
	function duration(ns) { return took(ns) "/op" }
	BEGIN { goal_roles = 1.1; roles_benchmarks = "^Benchmark(RoleReadCached1000|RoleMemory|PeriodicRoles/)" }
	/^Benchmark/ {
		name = $1
		sub(/-[0-9]+$/, "", name)
		order[++n] = name
		for (i = 3; i < NF; i += 2) value[name, $(i + 1)] = $i
	}
	END {
		floor = value["BenchmarkNoopRead", "vault-calls/op"]
		for (k = 1; k <= n; k++) {
			name = order[k]
			if (name ~ roles_benchmarks) continue
			figure = sprintf("%s · %s B/op · %s allocs/op", duration(value[name, "ns/op"]), value[name, "B/op"], value[name, "allocs/op"])
			calls = value[name, "vault-calls/op"]
			goal = ""; verdict = ""
			if (calls != "") {
				figure = figure sprintf(" · calls into Vault/op: %g", calls)
				if (name ~ /Cached/ && floor != "") {
					goal = sprintf("calls into Vault (each a gRPC round trip in a real plugin) ≤ the noop read'"'"'s %g", floor)
					verdict = (calls + 0 <= floor + 0) ? "met" : "**MISSED**"
				}
			}
			printf "| %s | %s | %s | %s |\n", describe(name), figure, goal, verdict
		}
		for (k = 1; k <= n; k++) if (order[k] ~ roles_benchmarks) roles_rows(order[k])
	}' "$work/inprocess.txt"
}

load_after="$(cut -d' ' -f1-3 /proc/loadavg)"
{
	echo "Measured $(date -u +%Y-%m-%d) by \`make bench\` on $(nproc) cores ($(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)), load average $load_before at the start, $load_after at the end;"
	echo "$("$vault_bin" version | head -1), vault-plugin-mirakl $version, $(go version | cut -d' ' -f3). Loopback only; one dev server (in-memory storage)."
	echo
	echo "| What | Figure | Goal | Verdict |"
	echo "|---|---|---|---|"
	inprocess_rows
	cat "$work/vault-rows.md"
} >"$out"

echo >&2
cat "$out"
echo
missed="$(grep -c 'MISSED' "$out" || true)"
if [[ "$missed" -gt 0 ]]; then
	echo "bench: $missed figure(s) missed their goal (marked **MISSED** above)."
else
	echo "bench: every figure with a goal met it."
fi
echo "bench: table written to ${out#"$root"/}; took $((SECONDS - started))s."
