#!/usr/bin/env bash
# Runs every benchmark and prints one markdown table: the in-process Go
# benchmarks of the engine (go test -bench, root package and the noop floor),
# then the real-Vault benchmarks (benchmarks/, build tag bench): kv1 / noop
# plugin / mirakl interleaved, upstream economy, startup and memory.
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
		return name
	}
	function duration(ns) {
		if (ns >= 1000000) return sprintf("%.2f ms/op", ns / 1000000)
		if (ns >= 1000)    return sprintf("%.2f µs/op", ns / 1000)
		return sprintf("%d ns/op", ns)
	}
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
	}' "$work/inprocess.txt"
}

{
	echo "Measured $(date -u +%Y-%m-%d) by \`make bench\` on $(nproc) cores ($(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)), load average $load_before at the start;"
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
