#!/usr/bin/env bash
# The CPU kernels on aarch64 (Apple silicon, Graviton, Raspberry Pi): cross-builds the
# kernels crate without burn (its block formats, dequantizer and CPU kernels) for
# aarch64-unknown-linux-gnu and runs its unit tests under qemu-user, which has the Armv8.2
# dot-product instructions: every NEON product (with and without `sdot`) is checked against
# the reference dequantizer, as the x86 kernels are; clippy checks the aarch64 build. Correctness only: qemu's timings mean
# nothing. `make test` runs it; installs what is missing (the rustup target, Debian's
# aarch64 cross linker and qemu-user).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/penwright/target}"
say() { printf '\033[1m[aarch64]\033[0m %s\n' "$*"; }
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

target=aarch64-unknown-linux-gnu
if ! rustup target list --installed | grep -qx "$target"; then
  say "adding the rustup target $target"
  rustup target add "$target"
fi
missing=()
for p in gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}"
fi

export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
cargo clippy -q -p penwright-kernels --no-default-features --target "$target" --lib --tests -- -D warnings
cargo test -p penwright-kernels --no-default-features --target "$target" --lib "$@"
