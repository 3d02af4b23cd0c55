#!/usr/bin/env bash
# Runs govulncheck over the module, offline, against a local copy of the Go
# vulnerability database.
#
# The database comes from the golang.org/x/vulndb module (its data/osv reports),
# fetched like any Go module and indexed with its cmd/indexdb into the file
# layout that `govulncheck -db file://...` reads. The tools and the database are
# pinned below and cached outside the checkout, so runs are repeatable and only
# the first one builds anything. To take newer reports, move VULNDB_VERSION to a
# newer pseudo-version of golang.org/x/vulndb.
#
# govulncheck reports a vulnerability as affecting us only when our code can
# reach the vulnerable symbol. Such a finding fails this script (and CI) unless
# it is listed in ACCEPTED below with the reason it does not need a fix here.
# Arguments are passed on to govulncheck (e.g. scripts/vulncheck.sh -show verbose).
set -euo pipefail

GOVULNCHECK_VERSION="v1.9.0"
VULNDB_VERSION="${VULNDB_VERSION:-v0.0.0-20261105234957-e22db6528018}"

# Reachable findings that are known and do not fail the run: "ID reason".
# Keep each reason honest and remove an entry as soon as its cause is gone (the
# script says when an entry no longer matches any finding).
#
# Empty: go.mod's toolchain line (go1.27.3, which the Makefile lets the go
# command fetch) carries the standard-library fixes that go1.26.8 lacked.
ACCEPTED=()

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/vault-plugin-mirakl"
# The tools are built by the module's own Go (scripts/go-tool.sh): govulncheck
# loads packages through the go command.
bin="$("$root/scripts/go-tool.sh" "golang.org/x/vuln/cmd/govulncheck@$GOVULNCHECK_VERSION")"
gover="$(cd "$root" && go env GOVERSION)"
db="$cache/vulndb-$VULNDB_VERSION"
mkdir -p "$cache"

tmp=""
trap '[[ -z "$tmp" ]] || rm -rf "$tmp"' EXIT

if [[ ! -f "$db/index/db.json" ]]; then
	indexdb="$("$root/scripts/go-tool.sh" "golang.org/x/vulndb/cmd/indexdb@$VULNDB_VERSION")"
	start=$SECONDS
	echo "vulncheck: building the vulnerability database from golang.org/x/vulndb@$VULNDB_VERSION (first time only)..." >&2
	src="$(cd "$cache" && go mod download -json "golang.org/x/vulndb@$VULNDB_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
	[[ -n "$src" && -d "$src/data/osv" ]] || { echo "vulncheck: no data/osv in golang.org/x/vulndb@$VULNDB_VERSION ($src)" >&2; exit 1; }
	tmp="$(mktemp -d "$cache/.vulndb.XXXXXX")"
	"$indexdb" -vulns "$src/data/osv" -out "$tmp/db"
	rm -rf "$db"
	mv "$tmp/db" "$db"
	rm -rf "$tmp"
	tmp=""
	echo "vulncheck: database of $(find "$db/ID" -name '*.json' | wc -l) reports built in $((SECONDS - start))s" >&2
fi

cd "$root"
echo "vulncheck: govulncheck $GOVULNCHECK_VERSION, database golang.org/x/vulndb@$VULNDB_VERSION, $gover" >&2
tmp="$(mktemp "$cache/.report.XXXXXX")"
rc=0
"$bin" -db "file://$db" "$@" ./... | tee "$tmp" || rc=$?
case "$rc" in
0 | 3) ;;
*) echo "vulncheck: govulncheck failed (exit $rc)" >&2; exit "$rc" ;;
esac

# The IDs of the reachable findings: the "Vulnerability #N: ID" lines of the
# text report's symbol section.
found="$(awk '/^=== /{symbols = ($0 == "=== Symbol Results ===")} symbols && /^Vulnerability #/{print $3}' "$tmp" | sort -u)"
if [[ "$rc" == 3 && -z "$found" ]]; then
	echo "vulncheck: govulncheck reports reachable vulnerabilities in an output this script cannot read; failing" >&2
	exit 1
fi

accepted_ids=""
for entry in "${ACCEPTED[@]}"; do accepted_ids+="${entry%% *}"$'\n'; done
unexpected="$(comm -23 <(printf '%s\n' "$found" | sed '/^$/d') <(printf '%s' "$accepted_ids" | sort -u))"
stale="$(comm -13 <(printf '%s\n' "$found" | sed '/^$/d') <(printf '%s' "$accepted_ids" | sort -u))"

echo >&2
for entry in "${ACCEPTED[@]}"; do
	grep -qxF -- "${entry%% *}" <<<"$found" && echo "vulncheck: accepted: $entry" >&2
done
if [[ -n "$stale" ]]; then
	echo "vulncheck: no longer found, remove from ACCEPTED in scripts/vulncheck.sh: $(tr '\n' ' ' <<<"$stale")" >&2
fi
if [[ -n "$unexpected" ]]; then
	echo "vulncheck: FAIL: reachable vulnerabilities to fix (upgrade the module in go.mod) or, with a reason, accept: $(tr '\n' ' ' <<<"$unexpected")" >&2
	exit 1
fi
echo "vulncheck: OK: no reachable vulnerability other than the accepted ones above" >&2
