# Penwright — the two commands: `make run` (the app on the default model) and `make test`.
SHELL := /bin/bash
export CARGO_TARGET_DIR ?= $(HOME)/.cache/penwright/target
export RUST_BACKTRACE ?= 1

.PHONY: run test setup ui app cli check fmt bundle

setup:
	@scripts/setup.sh

ui:
	cd ui && npm run build

app: setup ui
	cargo build --workspace

## Runs the desktop app on the embedded default model (starts Xvfb when there is no display).
run: app
	scripts/with-xvfb.sh "$(CARGO_TARGET_DIR)/debug/penwright-app"

## Runs every check and test: format, lints, Rust unit/integration/CLI tests, UI unit tests,
## end-to-end app tests under Xvfb, the CPU kernels cross-built for aarch64 and tested under
## qemu, then the .deb built, installed and smoke-tested, then five seconds of fuzzing per
## parser of untrusted input.
test: app
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	cd ui && npm test
	scripts/with-xvfb.sh cargo test --workspace --no-fail-fast
	scripts/check-aarch64.sh
	scripts/deb-check.sh
	scripts/fuzz.sh 5

## Builds the installable package (release; .deb here, `scripts/bundle.sh rpm|appimage` too):
## $(CARGO_TARGET_DIR)/release/bundle/deb/Penwright_*.deb
bundle: setup
	scripts/bundle.sh deb

fmt:
	cargo fmt --all
