#!/usr/bin/env bash
# Prints the path of a Go tool at a pinned version, building it on first use:
#
#   bin="$(scripts/go-tool.sh github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.15.0)"
#
# The tool is built with `go install` into a cache outside the checkout, one
# directory per tool, version and Go version: tools that load packages
# through the go command must be built by the module's own Go (go.mod's
# toolchain line), not the installed one. The build goes to a temporary
# directory first, so an interrupted one never leaves a binary that later
# runs would trust.
set -euo pipefail

pkg="${1:?usage: scripts/go-tool.sh PACKAGE@VERSION}"
name="$(basename "${pkg%@*}")"
version="${pkg##*@}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
gover="$(cd "$root" && go env GOVERSION)"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/vault-plugin-mirakl"
bin="$cache/$name-$version-$gover/$name"

if [[ ! -x "$bin" ]]; then
	echo "go-tool: installing $pkg with $gover into ${bin%/*} (first time only)..." >&2
	start=$SECONDS
	mkdir -p "$cache"
	tmp="$(mktemp -d "$cache/.$name.XXXXXX")"
	trap 'rm -rf "$tmp"' EXIT
	(cd "$tmp" && GOTOOLCHAIN="$gover" GOBIN="$tmp" GOFLAGS=-buildvcs=false go install "$pkg") >&2
	mkdir -p "${bin%/*}"
	mv "$tmp/$name" "$bin"
	echo "go-tool: installed $name in $((SECONDS - start))s" >&2
fi
echo "$bin"
