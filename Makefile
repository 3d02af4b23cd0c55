# Entry points. The version comes from one place: the VERSION file.
VERSION  := $(shell cat VERSION)
MODULE   := github.com/vault-plugin-mirakl/vault-plugin-mirakl
PLUGIN   := vault-plugin-mirakl
GO       ?= go
LDFLAGS  := -s -w -X $(MODULE).Version=$(VERSION)
GOFLAGS_BUILD := -trimpath -buildvcs=false -ldflags "$(LDFLAGS)"

# go.mod's toolchain line names a Go release with the standard-library security
# fixes that govulncheck asks for; let the go command fetch it from the module
# proxy even where the installed Go defaults to GOTOOLCHAIN=local.
export GOTOOLCHAIN ?= auto

.PHONY: all build test test-deps test-unit test-props test-rules test-e2e soak soak-planted vault fmt vet clean dev bench fuzz dist oci repro-check lint vulncheck mutate mutate-hand

all: build

## build: the plugin binary, version-stamped, into bin/
build:
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_BUILD) -o bin/$(PLUGIN) ./cmd/$(PLUGIN)

## test: the whole suite: unit tests, the alert rules' tests, then end-to-end tests against a real Vault (and OpenBao, when found)
test: test-deps test-unit test-rules test-e2e

## test-deps: install what the tests need beyond Go where the machine can (Debian's prometheus package)
test-deps:
	@scripts/test-deps.sh

## test-unit: the engine in-process; needs no Vault
test-unit:
	$(GO) test -race -count=1 ./...

## test-props: the property test (TestProperties) over many more random histories than test-unit's 60
PROPS_CHECKS ?= 2000
test-props:
	$(GO) test -race -count=1 -run '^TestProperties$$' -rapid.checks=$(PROPS_CHECKS) -v .

## test-rules: promtool checks the example alert rules and runs their tests (examples/prometheus);
## promtool comes with Prometheus (Debian: apt-get install prometheus); without it this fails, never skips
PROMTOOL ?= promtool
test-rules:
	@command -v $(PROMTOOL) >/dev/null || { echo "test-rules: $(PROMTOOL) not found: install Prometheus, which ships it" \
		"(Debian/Ubuntu: apt-get install prometheus; macOS: brew install prometheus), or set PROMTOOL=/path/to/promtool" >&2; exit 1; }
	$(PROMTOOL) check rules examples/prometheus/mirakl-alerts.yml
	$(PROMTOOL) test rules examples/prometheus/mirakl-alerts.test.yml

## vault: print the vault binary the e2e tests and the demo use (builds it on first use)
vault:
	@scripts/vault-bin.sh

# OpenBao, for the e2e tests that run in it as well as in Vault: $BAO_BIN, else
# the build beside the checkout (../shared/openbao/bao), else bao on PATH.
# None: those tests skip, and say how to run them.
BAO_BIN ?= $(firstword $(wildcard $(abspath $(CURDIR)/../shared/openbao/bao)) $(shell command -v bao 2>/dev/null))

## test-e2e: real vault (and bao) server, agent, proxy and CLI processes on loopback
test-e2e: build
	@if [ -z "$(BAO_BIN)" ]; then echo "test-e2e: no OpenBao (no BAO_BIN, no ../shared/openbao/bao, no bao on PATH): its tests skip; make test-e2e BAO_BIN=/path/to/bao runs them"; \
		else echo "test-e2e: OpenBao $(BAO_BIN)"; fi
	VAULT_BIN="$$(scripts/vault-bin.sh)" BAO_BIN="$(BAO_BIN)" PLUGIN_BIN="$(CURDIR)/bin/$(PLUGIN)" PLUGIN_VERSION="$(VERSION)" \
		$(GO) test -race -count=1 -tags e2e -parallel 8 -timeout 30m ./e2e/...

## soak: the chaos soak (e2e/soak): a 3-node raft cluster of Vault (and of OpenBao, when found) with readers
## through every node while a seeded schedule of faults plays, then every promise checked from the fake's and the
## readers' records. SOAK_DURATION (default 10m) per server, side by side; SOAK_SEED=<n> replays a schedule;
## SOAK_RUN=<name> a named one; SOAK_KINDS=vault (or openbao) runs one; SOAK_ALLOW=3,4 reports those invariants'
## failures without failing (for known engine bugs only)
# Empty: the test's default (10m), or SOAK_RUN's own duration.
SOAK_DURATION ?=
SOAK_TIMEOUT  ?= 3h
soak: build
	@if [ -z "$(BAO_BIN)" ]; then echo "soak: no OpenBao (no BAO_BIN, no ../shared/openbao/bao, no bao on PATH): Vault only"; \
		else echo "soak: OpenBao $(BAO_BIN)"; fi
	VAULT_BIN="$$(scripts/vault-bin.sh)" BAO_BIN="$(BAO_BIN)" PLUGIN_BIN="$(CURDIR)/bin/$(PLUGIN)" PLUGIN_VERSION="$(VERSION)" \
		SOAK_DURATION="$(SOAK_DURATION)" SOAK_SEED="$(SOAK_SEED)" SOAK_RUN="$(SOAK_RUN)" SOAK_KINDS="$(SOAK_KINDS)" SOAK_ALLOW="$(SOAK_ALLOW)" \
		$(GO) test -count=1 -tags soak -v -timeout $(SOAK_TIMEOUT) ./e2e/soak/

## soak-planted: plant one bug of each kind the soak's invariants judge (internal/cmd/mutate-hand/planted.go), build
## the plugin with it and run a short soak on Vault: each must fail its invariant. PLANT=<regexp> plants the bugs
## whose names match. About 20 minutes; not in CI
PLANT ?=
soak-planted:
	VAULT_BIN="$$(scripts/vault-bin.sh)" PLUGIN_VERSION="$(VERSION)" $(GO) run ./internal/cmd/mutate-hand -soak -run '$(PLANT)'

## dev: a Vault dev server with the plugin mounted at mirakl/ and a fake Mirakl
dev: build
	scripts/dev.sh

## bench: in-process and real-Vault benchmarks, printed as one table
bench: build
	scripts/bench.sh

## dist: release archives for linux, darwin, windows on amd64, arm64, their SBOMs (CycloneDX), and dist/SHA256SUMS;
## with SIGN_KEY=<gpg key id>, also dist/SHA256SUMS.sig. Reproducible: see scripts/dist.sh and make repro-check
dist:
	VERSION="$(VERSION)" LDFLAGS="$(LDFLAGS)" SIGN_KEY="$(SIGN_KEY)" scripts/dist.sh

## oci: after dist, the OCI image (linux/amd64, linux/arm64) for OpenBao's declarative plugins as an OCI
## image layout in dist/oci; with OCI_REPO=host/repo, also pushed there as host/repo:$(VERSION)
OCI_REPO ?=
OCI_SOURCE ?= https://github.com/vault-plugin-mirakl/vault-plugin-mirakl
oci: dist
	$(GO) run ./internal/cmd/oci-image -version "$(VERSION)" -epoch "$${SOURCE_DATE_EPOCH:-$$(git log -1 --format=%ct)}" \
		-source "$(OCI_SOURCE)" -layout dist/oci $(if $(OCI_REPO),-push "$(OCI_REPO)") \
		-binary linux/amd64=dist/$(PLUGIN)_$(VERSION)_linux_amd64/$(PLUGIN) \
		-binary linux/arm64=dist/$(PLUGIN)_$(VERSION)_linux_arm64/$(PLUGIN)

## repro-check: make dist in two fresh clones of HEAD (other directories, time zones, umasks) and compare every file
repro-check:
	scripts/repro-check.sh

## lint: golangci-lint (version pinned in scripts/lint.sh, installed on first use) with .golangci.yml
lint:
	scripts/lint.sh

## vulncheck: govulncheck against an offline copy of the Go vulnerability database
vulncheck:
	scripts/vulncheck.sh

## mutate: mutation testing of the engine with gremlins (pinned in scripts/mutate.sh); minutes, not in CI
mutate:
	scripts/mutate.sh

## mutate-hand: the hand-written mutations (internal/cmd/mutate-hand), each against the unit tests; minutes, not in CI
mutate-hand:
	$(GO) run ./internal/cmd/mutate-hand

## fuzz: each fuzz target for FUZZTIME (the checked-in seeds also run in every test-unit)
FUZZTIME ?= 10s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzTokenResponse$$' -fuzztime $(FUZZTIME) .
	$(GO) test -run '^$$' -fuzz '^FuzzConfigWrite$$' -fuzztime $(FUZZTIME) .

fmt:
	gofmt -w .

## vet: go vet of every package with each tag set, for each OS that `make dist` ships
VET_GOOS := linux darwin windows
vet:
	@set -e; for goos in $(VET_GOOS); do for tags in "" e2e bench soak; do \
		echo "go vet GOOS=$$goos tags=$${tags:-none}"; \
		CGO_ENABLED=0 GOOS=$$goos GOARCH=amd64 $(GO) vet -tags "$$tags" ./...; \
	done; done

clean:
	rm -rf bin dist
