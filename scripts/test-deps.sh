#!/usr/bin/env bash
# Installs what `make test` needs beyond Go, where this machine can: Debian's
# prometheus package (prometheus and promtool, for the alert rules' tests and
# the end-to-end scrape) and gnupg (gpg, for the test of the signed
# SHA256SUMS, internal/release). Terraform (or OpenTofu) cannot be installed
# from here: the Terraform test says so if neither is on PATH. Vault and
# OpenBao are found or built by scripts/vault-bin.sh and the e2e harness.
set -euo pipefail

packages=()
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
	packages+=(prometheus)
fi
command -v gpg >/dev/null || packages+=(gnupg)
[[ ${#packages[@]} -eq 0 ]] && exit 0

if command -v apt-get >/dev/null; then
	sudo=""
	if [[ "$(id -u)" != 0 ]]; then
		command -v sudo >/dev/null || { echo "test-deps: install Debian's ${packages[*]} (as root: apt-get install ${packages[*]})" >&2; exit 1; }
		sudo="sudo"
	fi
	echo "test-deps: installing Debian's ${packages[*]}" >&2
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
	exit 0
fi
echo "test-deps: ${packages[*]} needed: prometheus (promtool) and gpg (macOS: brew install prometheus gnupg; elsewhere your package manager)" >&2
exit 1
