#!/usr/bin/env bash
# Installs what Penwright needs and is missing, and nothing else: Debian/Ubuntu packages,
# the UI's npm packages, tauri-driver (for the end-to-end tests) and the default model.
# Safe to run again: a second run installs and downloads nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/penwright/target}"
TAURI_DRIVER_VERSION=2.1.0

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

# --- system packages -------------------------------------------------------------------
packages=(
  build-essential pkg-config curl file
  libwebkit2gtk-4.1-dev libssl-dev libxdo-dev librsvg2-dev   # Tauri 2 on Linux
  xvfb xauth webkit2gtk-driver imagemagick                   # app tests under Xvfb, screenshots
  mesa-vulkan-drivers libvulkan1                             # burn-wgpu (lavapipe where no GPU)
  python3 python3-pip python3-venv                           # the default model wheel; the openai client
)
scripts/install-debs.sh "${packages[@]}"

# --- Rust toolchain pieces -------------------------------------------------------------
command -v cargo >/dev/null || { echo "cargo not found: install Rust (https://rustup.rs), then run again" >&2; exit 1; }
if command -v rustup >/dev/null; then
  for c in clippy rustfmt; do
    rustup component list --installed 2>/dev/null | grep -q "^$c" || { say "adding rustup component $c"; rustup component add "$c"; }
  done
fi
if ! command -v tauri-driver >/dev/null || ! cargo install --list | grep -q "^tauri-driver v$TAURI_DRIVER_VERSION:"; then
  say "installing tauri-driver $TAURI_DRIVER_VERSION"
  cargo install tauri-driver --version "$TAURI_DRIVER_VERSION" --locked
else
  say "tauri-driver $TAURI_DRIVER_VERSION: present"
fi

# --- Python packages the tests use (the official openai client) -------------------------
py_env="$HOME/.cache/penwright/python"
if [ ! -x "$py_env/bin/python" ]; then
  say "making the tests' Python environment at $py_env"
  python3 -m venv "$py_env"
fi
if ! cmp -s tests/python-requirements.txt "$py_env/requirements.txt"; then
  say "installing the tests' Python packages"
  "$py_env/bin/pip" install -q --disable-pip-version-check -r tests/python-requirements.txt
  cp tests/python-requirements.txt "$py_env/requirements.txt"
else
  say "Python packages: up to date"
fi

# --- UI packages ------------------------------------------------------------------------
if [ ! -d ui/node_modules ] || [ ui/package-lock.json -nt ui/node_modules/.package-lock.json ]; then
  say "installing the UI's npm packages (npm ci)"
  (cd ui && npm ci --no-audit --no-fund)
else
  say "UI npm packages: up to date"
fi

# --- the default model ------------------------------------------------------------------
say "default model:"
# the whole workspace in one go (the app embeds ui/dist): building a single package would
# resolve dependency features differently and rebuild burn a second time
(cd ui && npm run build --silent >/dev/null)
cargo build -q --workspace
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
"$target_dir/debug/penwright" fetch
