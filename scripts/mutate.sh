#!/usr/bin/env bash
# Mutation testing of the engine (the root package) with gremlins, at the
# version pinned below: each mutant is a small change to the engine's code
# (a flipped comparison, a changed operator) that the unit tests should catch.
# Not part of CI: a run takes several minutes on two cores.
#
# gremlins is built once into a cache outside the checkout (scripts/go-tool.sh),
# as golangci-lint is for scripts/lint.sh. It copies the module into a
# temporary directory per worker; the checkout is never modified. Arguments
# are passed on to `gremlins unleash` (e.g. scripts/mutate.sh --workers 1,
# or --output-statuses lt to list only the survivors and the timeouts).
set -euo pipefail

version="v0.6.0"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="$("$root/scripts/go-tool.sh" "github.com/go-gremlins/gremlins/cmd/gremlins@$version")"

cd "$root"
# gremlins times its coverage run of the tests and allows each mutant's run
# that time multiplied by --timeout-coefficient: a cached result would make
# that budget a fraction of a second and every mutant "timed out".
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-count=1"

# The thresholds make the run fail when the tests stop catching what they
# used to. Efficacy is killed / (killed + lived). Mutant coverage is
# (killed + lived) / all, and cannot reach 100% here: gremlins counts a
# mutant as covered only inside a block of Go's coverage profile, and
# constant declarations and the case expressions of a switch lie outside
# any block (14 of the engine's mutants, most of them caught when applied by
# hand). They go in a config file: gremlins v0.6.0 reads the
# --threshold-* flags as text and ignores them.
# gremlins takes --config for a file only if its name has an extension.
configDir="$(mktemp -d "${TMPDIR:-/tmp}/gremlins-config.XXXXXX")"
trap 'rm -rf "$configDir"' EXIT
config="$configDir/gremlins.yaml"
cat >"$config" <<'YAML'
unleash:
  threshold:
    efficacy: 90
    mutant-coverage: 80
YAML

# --timeout-coefficient 10: a mutant that makes reads wait on a hanging or
# failing Mirakl (the gate or min_ttl undone) fails only once each affected
# test's request_timeout or 10 s wait deadline runs out; several of them
# take longer than five times a clean run on two busy cores, and were
# reported as timed out although every one of them fails.
# --exclude-files '/': only the files of the root package, the engine; the
# test helpers under internal/ and the command are not the engine.
"$bin" unleash \
	--config "$config" \
	--exclude-files '/' \
	--workers 2 \
	--timeout-coefficient 10 \
	"$@" .
