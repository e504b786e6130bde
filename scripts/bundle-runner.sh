#!/usr/bin/env bash
# The `cargo` that `tauri build --runner` calls: Tauri builds the app package alone
# (`cargo build --bins --features tauri/custom-protocol`), whose feature set differs from the
# workspace build's and would rebuild every dependency into the shared target dir; this
# builds the workspace as `make` and the tests do (Tauri 2 ignores that feature), in the
# profile Tauri asked for.
set -euo pipefail
if [[ "${1:-}" != build ]]; then
    exec cargo "$@"
fi
args=(build --workspace)
for a in "$@"; do
    [[ "$a" == --release ]] && args+=(--release)
done
exec cargo "${args[@]}"
