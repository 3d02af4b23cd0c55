#!/usr/bin/env bash
# Builds the release artefacts into dist/:
#
#   dist/vault-plugin-mirakl_<version>_<os>_<arch>/          the plugin binary, README.md, LICENSE, CHANGELOG.md
#   dist/vault-plugin-mirakl_<version>_<os>_<arch>.tar.gz    that directory, archived (.zip for windows when zip is installed)
#   dist/SHA256SUMS                                          sha256sum format, one line per archive and per binary
#
# SHA256SUMS lists two kinds of files, told apart by their names:
#   - the archives (*.tar.gz, *.zip): check a download with `sha256sum -c --ignore-missing SHA256SUMS`;
#   - the bare binaries (<archive name>/vault-plugin-mirakl[.exe]): the value that
#     `vault plugin register -sha256=...` wants. An archive extracts to that same
#     path, so the same `sha256sum -c` checks the extracted binary too.
#
# The binaries are static (CGO_ENABLED=0), built with -trimpath and stamped with
# the version from the VERSION file, exactly as `make build` does. The Makefile
# passes VERSION and LDFLAGS; run alone, the script computes the same values.
# DIST_PLATFORMS="linux/amd64 darwin/arm64" builds a subset.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

plugin="vault-plugin-mirakl"
module="github.com/vault-plugin-mirakl/vault-plugin-mirakl"
version="${VERSION:-$(tr -d '[:space:]' <VERSION)}"
ldflags="${LDFLAGS:--s -w -X $module.Version=$version}"
platforms="${DIST_PLATFORMS:-linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64 windows/arm64}"
out="$root/dist"

[[ "$version" =~ ^v[0-9]+\.[0-9]+\.[0-9]+ ]] || { echo "dist: version \"$version\" is not vMAJOR.MINOR.PATCH (see VERSION)" >&2; exit 1; }
for f in README.md LICENSE CHANGELOG.md; do
	[[ -f "$f" ]] || { echo "dist: $f is missing; every archive ships it" >&2; exit 1; }
done
sha256() { if command -v sha256sum >/dev/null; then sha256sum "$@"; else shasum -a 256 "$@"; fi; }

# Fixed timestamps and owners make the archives depend only on their contents.
epoch="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}"
gnu_tar=false
tar --version 2>/dev/null | grep -q 'GNU tar' && gnu_tar=true
have_zip=false
command -v zip >/dev/null && have_zip=true
$have_zip || echo "dist: zip is not installed; windows archives will be .tar.gz" >&2

rm -rf "$out"
mkdir -p "$out"
archives=() binaries=()
for platform in $platforms; do
	goos="${platform%/*}" goarch="${platform#*/}"
	name="${plugin}_${version}_${goos}_${goarch}"
	exe="$plugin"
	[[ "$goos" == windows ]] && exe="$plugin.exe"
	stage="$out/$name"
	mkdir -p "$stage"

	echo "dist: building $goos/$goarch" >&2
	CGO_ENABLED=0 GOOS="$goos" GOARCH="$goarch" \
		go build -trimpath -ldflags "$ldflags" -o "$stage/$exe" "./cmd/$plugin"
	# The build settings the binary records show how it was built (with
	# -trimpath they omit -ldflags, so the version stamp cannot be checked here).
	settings="$(go version -m "$stage/$exe")"
	for want in "CGO_ENABLED=0" "-trimpath=true"; do
		grep -qF -- "$want" <<<"$settings" || { echo "dist: $stage/$exe lacks $want in its build settings" >&2; exit 1; }
	done

	cp README.md LICENSE CHANGELOG.md "$stage/"
	touch -d "@$epoch" "$stage" "$stage"/* 2>/dev/null || true

	if [[ "$goos" == windows ]] && $have_zip; then
		archive="$name.zip"
		(cd "$out" && zip -q -X -r "$archive" "$name")
	else
		archive="$name.tar.gz"
		if $gnu_tar; then
			tar -C "$out" --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" -cf - "$name" | gzip -n >"$out/$archive"
		else
			tar -C "$out" -cf - "$name" | gzip -n >"$out/$archive"
		fi
	fi
	archives+=("$archive")
	binaries+=("$name/$exe")
done

(cd "$out" && sha256 "${archives[@]}" "${binaries[@]}") >"$out/SHA256SUMS"

echo "dist: $version artefacts in dist/:" >&2
(cd "$out" && ls -l "${archives[@]}" SHA256SUMS) >&2
echo "dist: sha256 of each plugin binary (for vault plugin register -sha256=...):" >&2
(cd "$out" && sha256 "${binaries[@]}") >&2
