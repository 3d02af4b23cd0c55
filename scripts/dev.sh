#!/usr/bin/env bash
# The local demo behind `make dev` (which builds bin/vault-plugin-mirakl first).
#
# Starts a fake Mirakl token endpoint and `vault server -dev` on 127.0.0.1,
# registers the plugin with its sha256 and version, mounts it at mirakl/,
# configures it against the fake, reads one token, and prints what to try
# next. Stays in the foreground; Ctrl-C stops everything it started.
#
# Nothing here needs the internet or real Mirakl credentials.
# Environment: VAULT_DEV_PORT (default: 8200, or the next free port).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'dev: %s\n' "$*" >&2; exit 1; }

plugin_bin="$root/bin/vault-plugin-mirakl"
version="$(cat VERSION)"
[[ -x "$plugin_bin" ]] || die "$plugin_bin is missing: run \`make dev\` (it builds the plugin first)"

vault_bin="$(scripts/vault-bin.sh)"
work="$(mktemp -d "${TMPDIR:-/tmp}/vault-plugin-mirakl-dev.XXXXXX")"
vault_pid="" fake_pid=""

stop() {
	trap - EXIT INT TERM
	say "stopping"
	for pid in $vault_pid $fake_pid; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in $vault_pid $fake_pid; do
		wait "$pid" 2>/dev/null || true
	done
	rm -rf "$work"
	say "stopped Vault and the fake Mirakl endpoint; removed $work"
}
trap stop EXIT
trap 'exit 130' INT TERM

sha256() {
	if command -v sha256sum >/dev/null 2>&1; then sha256sum "$1" | cut -d' ' -f1; else shasum -a 256 "$1" | cut -d' ' -f1; fi
}

listening() { (: <"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# 1. The fake Mirakl token endpoint: the same code as the tests' fake.
say "building and starting the fake Mirakl token endpoint"
go build -o "$work/fake-mirakl" ./internal/cmd/fake-mirakl
client_id="demo-client"
client_secret="demo-secret-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
"$work/fake-mirakl" -addr 127.0.0.1:0 -client-id "$client_id" -client-secret "$client_secret" \
	>"$work/fake.url" 2>"$work/fake.log" &
fake_pid=$!
for _ in $(seq 50); do
	[[ -s "$work/fake.url" ]] && break
	kill -0 "$fake_pid" 2>/dev/null || die "the fake endpoint did not start: $(cat "$work/fake.log")"
	sleep 0.1
done
token_url="$(head -n1 "$work/fake.url")"
[[ -n "$token_url" ]] || die "the fake endpoint printed no URL"

# 2. Vault in dev mode, with a plugin directory holding our binary.
port="${VAULT_DEV_PORT:-8200}"
if [[ -z "${VAULT_DEV_PORT:-}" ]]; then
	while listening "$port" || listening "$((port + 1))"; do port=$((port + 2)); done
elif listening "$port"; then
	die "127.0.0.1:$port is taken; pick another VAULT_DEV_PORT"
fi
mkdir -p "$work/plugins"
cp "$plugin_bin" "$work/plugins/vault-plugin-mirakl"
sum="$(sha256 "$work/plugins/vault-plugin-mirakl")"

export VAULT_ADDR="http://127.0.0.1:$port" VAULT_TOKEN="root"
unset VAULT_NAMESPACE VAULT_FORMAT
say "starting vault server -dev on $VAULT_ADDR ($vault_bin)"
"$vault_bin" server -dev -dev-root-token-id="$VAULT_TOKEN" -dev-listen-address="127.0.0.1:$port" \
	-dev-plugin-dir="$work/plugins" -dev-no-store-token >"$work/vault.log" 2>&1 &
vault_pid=$!
for _ in $(seq 150); do
	"$vault_bin" status >/dev/null 2>&1 && break
	kill -0 "$vault_pid" 2>/dev/null || die "vault did not start: $(tail -n 20 "$work/vault.log")"
	sleep 0.2
done
"$vault_bin" status >/dev/null || die "vault is not ready: $(tail -n 20 "$work/vault.log")"

# 3. What an operator does, with the commands the README shows.
v() { printf '$ vault %s\n' "$*"; "$vault_bin" "$@"; echo; }

v plugin register -sha256="$sum" -version="$version" -command=vault-plugin-mirakl secret mirakl
v secrets enable -path=mirakl mirakl
printf '$ vault write mirakl/config client_id=%s client_secret=... token_url=%s\n' "$client_id" "$token_url"
"$vault_bin" write mirakl/config client_id="$client_id" client_secret="$client_secret" token_url="$token_url"
echo
v read mirakl/token

# What to paste in another shell. That shell may have no vault on PATH (a
# build cached under ~/.cache, or $VAULT_BIN), so name the binary we run. No
# comments on the lines: zsh, unlike bash, does not take # as one when typed.
vault_cmd=vault path_line=""
if [[ "$(command -v vault 2>/dev/null || true)" != "$vault_bin" ]]; then
	if [[ "$(basename "$vault_bin")" == vault ]]; then
		path_line="$(printf 'export PATH=%q:"$PATH"' "$(dirname "$vault_bin")")"
	else
		vault_cmd="$(printf '%q' "$vault_bin")"
	fi
fi
reader_policy="$(printf '%q' "$root/examples/policies/mirakl-reader.hcl")"

cat <<EOF
The Mirakl secrets engine $version is mounted at mirakl/ in a dev Vault, talking to
a fake Mirakl token endpoint at $token_url.

In another shell, paste:

    export VAULT_ADDR=$VAULT_ADDR
    export VAULT_TOKEN=$VAULT_TOKEN
${path_line:+    $path_line
}
then try a token (the cached one, under a new lease), the config (the secret is never
shown) and the help:

    $vault_cmd read mirakl/token
    $vault_cmd read -format=json mirakl/token
    $vault_cmd read mirakl/config
    $vault_cmd path-help mirakl/token

Rewriting the config replaces the cached token (the next read gets a new one); a
reader's policy lets a Vault token read tokens and nothing else:

    $vault_cmd write -f mirakl/config
    $vault_cmd policy write mirakl-reader $reader_policy
    $vault_cmd token create -policy=mirakl-reader

Logs: $work/vault.log and $work/fake.log (removed on exit).
Press Ctrl-C to stop Vault and the fake endpoint.
EOF

# Stay in the foreground until Ctrl-C, or until Vault stops by itself.
wait "$vault_pid" || true
vault_pid=""
say "vault exited; its log ended with:"
tail -n 20 "$work/vault.log" >&2 || true
