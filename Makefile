# onshi-fleet: `make demo` runs the whole stack locally, `make test` runs every test.
# Both install what is missing (system packages via apt-get) and start their own PostgreSQL
# unless DATABASE_URL is set.

SHELL := /bin/bash
CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show this help
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

.PHONY: deps
deps: ## Install missing system packages (PostgreSQL, pcscd, vsmartcard-vpcd, ...)
	@scripts/ensure-deps.sh

.PHONY: build
build: ## Build every binary (debug)
	$(CARGO) build --workspace --bins --locked

.PHONY: fmt
fmt: ## Format the code
	$(CARGO) fmt --all

.PHONY: lint
lint: ## cargo fmt --check and clippy -D warnings
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

.PHONY: helm-check
helm-check: ## Lint the Helm chart and validate its manifests (installs helm and kubernetes-validate into .local/tools)
	scripts/check-helm.sh

# After the Linux tests, the Windows agent (scripts/windows.sh test: cross-build, clippy for the
# Windows target, its unit tests and end-to-end tests under Wine; README, "The Windows agent").
# The tests end with the fuzz smoke of every target of every fuzz crate: each replays its seeds
# and fuzzes a few seconds (the cold builds and their share of CI: README, "Fuzzing").
.PHONY: test
test: deps lint helm-check build ## Run every test against real PostgreSQL, TLS and processes, the Windows agent's under Wine
	scripts/with-pg.sh scripts/run-tests.sh
	scripts/windows.sh test
	scripts/fuzz.sh smoke

.PHONY: fuzz
fuzz: deps ## Run every fuzz target FUZZ_SECONDS each (default 1800), FUZZ_PARALLEL at once (default: cores)
	scripts/fuzz.sh run

.PHONY: fuzz-smoke
fuzz-smoke: deps ## Build the fuzz targets; each replays its seeds and fuzzes a few seconds (FUZZ_SMOKE_SECONDS)
	scripts/fuzz.sh smoke

.PHONY: windows
windows: ## Cross-build edge-agent.exe and its MSI for Windows into target/windows/dist (Debian's rustc-web + mingw-w64, wixl)
	scripts/windows.sh build

.PHONY: test-windows
test-windows: deps build ## Only the Windows agent's part of make test: clippy, unit tests under Wine, end-to-end against the Linux stack
	scripts/windows.sh test

.PHONY: demo
demo: deps build ## Run PostgreSQL, onshi-sim, central and two agents; Ctrl-C stops everything
	scripts/demo.sh

.PHONY: bench
bench: deps ## Ingest (vs raw COPY), connection, drain, dashboard page and terminal-folder benchmarks, release build, throwaway PostgreSQL
	$(CARGO) build --release --locked -p central -p edge-agent -p onshi-sim -p fleet-bench
	scripts/with-pg.sh target/release/fleet-bench ingest
	scripts/with-pg.sh target/release/fleet-bench connections
	scripts/with-pg.sh target/release/fleet-bench drain
	scripts/with-pg.sh target/release/fleet-bench pages
	scripts/with-pg.sh target/release/fleet-bench terminal

.PHONY: clean-local
clean-local: ## Remove the demo's data (PKI, database, outboxes)
	rm -rf .local
