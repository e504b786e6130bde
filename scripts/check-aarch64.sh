#!/usr/bin/env bash
# The CPU kernels on aarch64 (Apple silicon, Graviton, Raspberry Pi): cross-builds the
# kernels crate without burn (its block formats, dequantizer and CPU kernels) for
# aarch64-unknown-linux-gnu and runs its unit tests under qemu-user, which has the Armv8.2
# dot-product instructions: every NEON kernel (products with and without `sdot`, the
# activations' quantizer, attention) is checked against the reference dequantizer and the
# portable code, as the x86 kernels are; clippy checks the aarch64 build. Correctness only:
# qemu's timings mean nothing. `make test` runs it; installs what is missing (the rustup
# target, Debian's aarch64 cross linker and qemu-user). Arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/penwright/target}"
say() { printf '\033[1m[aarch64]\033[0m %s\n' "$*"; }

target=aarch64-unknown-linux-gnu
if ! rustup target list --installed | grep -qx "$target"; then
  say "adding the rustup target $target"
  rustup target add "$target"
fi
scripts/install-debs.sh gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user

export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
cargo clippy -q -p penwright-kernels --no-default-features --target "$target" --lib --tests -- -D warnings
cargo test -p penwright-kernels --no-default-features --target "$target" --lib "$@"
