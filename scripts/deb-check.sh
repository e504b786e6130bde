#!/usr/bin/env bash
# The package as a writer gets it: builds the .deb (scripts/bundle.sh --debug), installs it
# with apt-get and runs the installed-app tests (tests/tests/installed.rs) on it under Xvfb.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/penwright/target}"
sudo_if() { if [[ $EUID -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

scripts/bundle.sh --debug deb
deb="$(ls -t "$CARGO_TARGET_DIR"/debug/bundle/deb/*.deb | head -1)"
echo "installing $deb"
sudo_if apt-get install -y --reinstall "$deb" > /dev/null
scripts/with-xvfb.sh cargo test --workspace --test installed -- --ignored --test-threads=1
