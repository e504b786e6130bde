#!/usr/bin/env bash
# Builds Penwright's installable packages with Tauri's bundler.
#
#   scripts/bundle.sh [--debug] [BUNDLES]
#
# BUNDLES: deb (default here), rpm, appimage (on macOS and Windows the same config yields
# dmg and msi). The release build is what to hand out; --debug packages the dev profile the
# tests already built (dependencies optimized), which is how `make test` checks the package.
# The `penwright` command line goes in the package beside the app: fine-tuning runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/penwright/target}"

profile=release
flags=()
if [[ "${1:-}" == "--debug" ]]; then
    profile=debug
    flags+=(--debug)
    shift
fi
bundles="${1:-deb}"

cargo_flags=(--workspace)
[[ "$profile" == release ]] && cargo_flags+=(--release)
(cd ui && npm run build)
cargo build "${cargo_flags[@]}"

# Tauri wants the extra binary named for the target: penwright-x86_64-unknown-linux-gnu
triple="$(rustc -vV | sed -n 's/^host: //p')"
bin_dir="$CARGO_TARGET_DIR/bundle-bin"
mkdir -p "$bin_dir"
cp "$CARGO_TARGET_DIR/$profile/penwright" "$bin_dir/penwright-$triple"

# The Tauri CLI wants the config beside the app's own Cargo.toml (the root one is the
# workspace's): for the bundler only, src-tauri/ gets a link to the root config, and the
# paths in it are given again, absolute (the app's build reads them too, from the root).
link=src-tauri/tauri.conf.json
ln -s ../tauri.conf.json "$link"
trap 'rm -f "$link"' EXIT
overrides=$(cat <<JSON
{"build": {"frontendDist": "$PWD/ui/dist", "beforeBuildCommand": ""},
 "bundle": {"icon": ["$PWD/icons/icon.png"], "externalBin": ["$bin_dir/penwright"]}}
JSON
)
(cd src-tauri && ../ui/node_modules/.bin/tauri build "${flags[@]}" --ci --bundles "$bundles" \
    --runner ../scripts/bundle-runner.sh --config "$overrides")
echo "packages in $CARGO_TARGET_DIR/$profile/bundle/"
