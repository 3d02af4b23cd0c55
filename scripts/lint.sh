#!/usr/bin/env bash
# Runs golangci-lint, at the version pinned below, over the whole module with
# the committed .golangci.yml (which also turns on the e2e build tag, so the
# end-to-end tests are linted with the rest).
#
# The linter is built once into a cache outside the checkout (scripts/go-tool.sh;
# first run: a minute or two on two cores; later runs reuse it). Arguments are
# passed on to `golangci-lint run`, e.g. scripts/lint.sh --fix.
set -euo pipefail

version="v2.15.0"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="$("$root/scripts/go-tool.sh" "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$version")"

cd "$root"
"$bin" version >&2
"$bin" run "$@" ./...
