#!/usr/bin/env bash
# Builds the release artefacts into dist/ (or $DIST_DIR):
#
#   dist/vault-plugin-mirakl_<version>_<os>_<arch>/          the plugin binary, README.md, LICENSE, CHANGELOG.md
#   dist/vault-plugin-mirakl_<version>_<os>_<arch>.tar.gz    that directory, archived (.zip for windows)
#   dist/vault-plugin-mirakl_<version>_<os>_<arch>.cdx.json  the binary's SBOM (CycloneDX JSON, cyclonedx-gomod)
#   dist/SHA256SUMS                                          sha256sum format: every archive, binary and SBOM
#   dist/SHA256SUMS.sig                                      with SIGN_KEY=<gpg key id>: a detached binary
#                                                            GPG signature of SHA256SUMS
#
# SHA256SUMS lists three kinds of files, told apart by their names:
#   - the archives (*.tar.gz, *.zip) and SBOMs (*.cdx.json): check a download with
#     `sha256sum -c --ignore-missing SHA256SUMS`;
#   - the bare binaries (<archive name>/vault-plugin-mirakl[.exe]): the value that
#     `vault plugin register -sha256=...` (and OpenBao's plugin stanza's sha256sum) wants.
#     An archive extracts to that same path, so the same `sha256sum -c` checks the
#     extracted binary too.
#
# Reproducible: the same commit gives the same bytes (every file but the
# signature) in any directory, time zone, umask or machine. What the build
# depends on is pinned here: the Go toolchain (go.mod's toolchain line, exactly,
# not a newer local Go), GOFLAGS, CGO_ENABLED=0, GOAMD64/GOARM64 at their
# defaults, -trimpath (no directory names in the binary), -buildvcs=false (no
# commit or dirty flag, which differ between a clone and a tarball), and the
# archives are written by internal/cmd/dist-archive (sorted entries, fixed
# modes and owners, every time stamp SOURCE_DATE_EPOCH, else the commit time,
# in UTC; gzip without name or time). The SBOMs have no serial number and no
# time stamp. scripts/repro-check.sh builds twice and compares.
#
# The Makefile passes VERSION and LDFLAGS; run alone, the script computes the
# same values. DIST_PLATFORMS="linux/amd64 darwin/arm64" builds a subset.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

plugin="vault-plugin-mirakl"
module="github.com/vault-plugin-mirakl/vault-plugin-mirakl"
version="${VERSION:-$(tr -d '[:space:]' <VERSION)}"
ldflags="${LDFLAGS:--s -w -X $module.Version=$version}"
platforms="${DIST_PLATFORMS:-linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64 windows/arm64}"
out="${DIST_DIR:-$root/dist}"
sign_key="${SIGN_KEY:-}"
# cyclonedx-gomod, pinned like the linter; installed into the cache on first use.
cdx_version="v1.10.0"

[[ "$version" =~ ^v[0-9]+\.[0-9]+\.[0-9]+ ]] || { echo "dist: version \"$version\" is not vMAJOR.MINOR.PATCH (see VERSION)" >&2; exit 1; }
for f in README.md LICENSE CHANGELOG.md; do
	[[ -f "$f" ]] || { echo "dist: $f is missing; every archive ships it" >&2; exit 1; }
done
sha256() { if command -v sha256sum >/dev/null; then sha256sum "$@"; else shasum -a 256 "$@"; fi; }

# The exact toolchain go.mod names: GOTOOLCHAIN=auto would take a newer local Go.
toolchain="$(awk '$1 == "toolchain" {print $2}' go.mod)"
[[ -n "$toolchain" ]] || { echo "dist: go.mod has no toolchain line to pin the Go release" >&2; exit 1; }
export GOTOOLCHAIN="$toolchain" GOFLAGS="-mod=readonly" CGO_ENABLED=0 GOAMD64=v1 GOARM64=v8.0 GOEXPERIMENT=""
[[ "$(go env GOVERSION)" == "$toolchain" ]] || { echo "dist: go runs $(go env GOVERSION), not $toolchain" >&2; exit 1; }

epoch="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || true)}"
[[ "$epoch" =~ ^[0-9]+$ ]] || { echo "dist: no commit time (not a git checkout?): set SOURCE_DATE_EPOCH" >&2; exit 1; }

if [[ -n "$sign_key" ]]; then
	command -v gpg >/dev/null || { echo "dist: SIGN_KEY is set but gpg is not installed" >&2; exit 1; }
	gpg --batch --list-secret-keys "$sign_key" >/dev/null 2>&1 || { echo "dist: gpg has no secret key $sign_key" >&2; exit 1; }
fi

cdx="$(scripts/go-tool.sh "github.com/CycloneDX/cyclonedx-gomod/cmd/cyclonedx-gomod@$cdx_version")"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
GOOS= GOARCH= go build -o "$tmp/dist-archive" ./internal/cmd/dist-archive

rm -rf "$out"
mkdir -p "$out"
archives=() binaries=() sboms=()
for platform in $platforms; do
	goos="${platform%/*}" goarch="${platform#*/}"
	name="${plugin}_${version}_${goos}_${goarch}"
	exe="$plugin"
	[[ "$goos" == windows ]] && exe="$plugin.exe"
	stage="$out/$name"
	mkdir -p "$stage"

	echo "dist: building $goos/$goarch" >&2
	GOOS="$goos" GOARCH="$goarch" \
		go build -trimpath -buildvcs=false -ldflags "$ldflags" -o "$stage/$exe" "./cmd/$plugin"
	# The build settings the binary records show how it was built (with
	# -trimpath they omit -ldflags, so the version stamp cannot be checked here).
	settings="$(go version -m "$stage/$exe")"
	for want in "CGO_ENABLED=0" "-trimpath=true" "$toolchain"; do
		grep -qF -- "$want" <<<"$settings" || { echo "dist: $stage/$exe lacks $want in its build settings" >&2; exit 1; }
	done
	if grep -q 'vcs\.' <<<"$settings"; then echo "dist: $stage/$exe records VCS data" >&2; exit 1; fi
	# The release tooling's dependencies (the OCI image builder's) stay out of the plugin.
	if grep -q 'go-containerregistry' <<<"$settings"; then echo "dist: $stage/$exe links go-containerregistry" >&2; exit 1; fi

	"$cdx" bin -json -std -noserial -notimestamp -version "$version" -output "$out/$name.cdx.json" "$stage/$exe" 2>"$tmp/cdx.log" ||
		{ cat "$tmp/cdx.log" >&2; exit 1; }
	cp README.md LICENSE CHANGELOG.md "$stage/"

	archive="$name.tar.gz"
	[[ "$goos" == windows ]] && archive="$name.zip"
	"$tmp/dist-archive" -epoch "$epoch" -o "$out/$archive" "$stage"
	archives+=("$archive")
	binaries+=("$name/$exe")
	sboms+=("$name.cdx.json")
done

(cd "$out" && sha256 "${archives[@]}" "${sboms[@]}" "${binaries[@]}") >"$out/SHA256SUMS"
if [[ -n "$sign_key" ]]; then
	# Binary (not armoured), detached, as HashiCorp signs its SHA256SUMS:
	# gpg --verify SHA256SUMS.sig SHA256SUMS checks it.
	gpg --batch --yes --local-user "$sign_key" --detach-sign --output "$out/SHA256SUMS.sig" "$out/SHA256SUMS"
fi

echo "dist: $version artefacts in $out (toolchain $toolchain, SOURCE_DATE_EPOCH=$epoch):" >&2
(cd "$out" && ls -l "${archives[@]}" "${sboms[@]}" SHA256SUMS $([[ -n "$sign_key" ]] && echo SHA256SUMS.sig)) >&2
echo "dist: sha256 of each plugin binary (for vault plugin register -sha256=...):" >&2
(cd "$out" && sha256 "${binaries[@]}") >&2
