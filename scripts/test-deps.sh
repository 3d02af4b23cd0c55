#!/usr/bin/env bash
# Installs what `make test` needs beyond Go, where this machine can: Debian's
# prometheus package (prometheus and promtool, for the alert rules' tests and
# the end-to-end scrape). Terraform (or OpenTofu) cannot be installed from
# here: the Terraform test says so if neither is on PATH. Vault and OpenBao
# are found or built by scripts/vault-bin.sh and the e2e harness.
set -euo pipefail

if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
	exit 0
fi
if command -v apt-get >/dev/null; then
	sudo=""
	if [[ "$(id -u)" != 0 ]]; then
		command -v sudo >/dev/null || { echo "test-deps: install Debian's prometheus package (as root: apt-get install prometheus)" >&2; exit 1; }
		sudo="sudo"
	fi
	echo "test-deps: installing Debian's prometheus package (prometheus, promtool)" >&2
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null
	exit 0
fi
echo "test-deps: prometheus and promtool are needed (macOS: brew install prometheus; elsewhere your package manager)" >&2
exit 1
