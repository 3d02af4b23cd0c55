#!/usr/bin/env bash
# Runs golangci-lint, at the version pinned below, over the whole module with
# the committed .golangci.yml (which also turns on the e2e build tag, so the
# end-to-end tests are linted with the rest).
#
# The linter is built once with `go install` into a cache outside the checkout
# (first run: a few minutes on two cores; later runs reuse it). Arguments are
# passed on to `golangci-lint run`, e.g. scripts/lint.sh --fix.
set -euo pipefail

version="v2.15.0"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The linter must be built by a Go at least as new as the one of the module, so
# its cache directory is per Go version.
gover="$(cd "$root" && go env GOVERSION)" # the module's toolchain (go.mod), not the installed Go
cache="${XDG_CACHE_HOME:-$HOME/.cache}/vault-plugin-mirakl/golangci-lint-$version-$gover"
bin="$cache/golangci-lint"

if [[ ! -x "$bin" ]]; then
	echo "lint: installing golangci-lint $version into $cache (first time only)..." >&2
	start=$SECONDS
	# Install into a temporary directory so an interrupted build never leaves a
	# binary behind that later runs would trust.
	mkdir -p "${cache%/*}"
	tmp="$(mktemp -d "${cache%/*}/.golangci-lint.XXXXXX")"
	trap 'rm -rf "$tmp"' EXIT
	(cd "$tmp" && GOTOOLCHAIN="$gover" GOBIN="$tmp" GOFLAGS=-buildvcs=false go install "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$version") >&2
	mkdir -p "$cache"
	mv "$tmp/golangci-lint" "$bin"
	echo "lint: installed in $((SECONDS - start))s" >&2
fi

cd "$root"
"$bin" version >&2
"$bin" run "$@" ./...
