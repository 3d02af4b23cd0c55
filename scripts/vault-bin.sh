#!/usr/bin/env bash
# Prints the path of a vault binary, building one on first use.
#
# Order: $VAULT_BIN, then a vault on PATH, then a cached build of the version
# pinned in tools/vault/go.mod. The cache lives outside the checkout so that
# later runs (and CI on the same machine) reuse it; the first build takes minutes.
set -euo pipefail

if [[ -n "${VAULT_BIN:-}" ]]; then
	[[ -x "$VAULT_BIN" ]] || { echo "VAULT_BIN=$VAULT_BIN is not an executable" >&2; exit 1; }
	echo "$VAULT_BIN"
	exit 0
fi

if command -v vault >/dev/null 2>&1; then
	command -v vault
	exit 0
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
version="$(awk '$1 == "github.com/hashicorp/vault" && $2 ~ /^v/ {print $2; exit}' "$root/tools/vault/go.mod")"
[[ -n "$version" ]] || { echo "vault-bin: cannot read the Vault version from tools/vault/go.mod" >&2; exit 1; }
cache="${XDG_CACHE_HOME:-$HOME/.cache}/vault-plugin-mirakl/vault-$version"
bin="$cache/vault"

if [[ -x "$bin" ]]; then
	echo "$bin"
	exit 0
fi

mkdir -p "$cache"
echo "vault-bin: no vault on PATH; building Vault $version into $cache (first time only, about 12 minutes)..." >&2
start=$SECONDS
# Build to a temporary name so an interrupted build never leaves a broken binary behind.
(cd "$root/tools/vault" && go build -trimpath -ldflags "-s -w" -o "$bin.tmp" github.com/hashicorp/vault) >&2
mv "$bin.tmp" "$bin"
echo "vault-bin: built $bin in $((SECONDS - start))s" >&2
echo "$bin"
