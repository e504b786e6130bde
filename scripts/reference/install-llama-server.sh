#!/usr/bin/env bash
# Builds llama.cpp's own OpenAI-compatible server, llama-server, for the opt-in test of
# Penwright's remote engine against a second real engine (tests/tests/serve.rs,
# `llama_server_*`, run with `--ignored`). The source is the llama.cpp that the
# llama-cpp-python sdist on PyPI vendors (the registry this project may use), checked
# against PyPI's sha256. It lands in ~/.cache/penwright/llama-server (nothing committed):
#   bin/llama-server      the server, CPU features named as install-llama-cpp.sh names them
#   bin/llama-bench       llama.cpp's own benchmark, same build (the side-by-side speed runs)
#   smollm2-fim.gguf      the default model with fill-in-the-middle token ids in its
#                         metadata, so that llama-server's /infill serves it (SmolLM2 has no
#                         FIM tokens of its own: the ids are three of its unused special
#                         tokens, enough to drive the protocol, not to infill well)
# Needs cmake and a C++ compiler (apt-get install cmake build-essential) and the default
# model (penwright fetch). About 10 minutes on 2 cores.
set -euo pipefail
VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
SHA256="${LLAMA_CPP_PYTHON_SHA256:-832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e}"
DEST="${LLAMA_SERVER_DIR:-$HOME/.cache/penwright/llama-server}"
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/penwright/target}"
mkdir -p "$DEST"

if [ ! -x "$DEST/bin/llama-server" ] || [ ! -x "$DEST/bin/llama-bench" ]; then
  src="$DEST/src"
  if [ ! -d "$src/llama_cpp_python-$VERSION" ]; then
    mkdir -p "$src"
    url=$(curl -fsS -H "Accept: application/vnd.pypi.simple.v1+json" https://pypi.org/simple/llama-cpp-python/ |
      python3 -c "import json,sys; print(next(f['url'] for f in json.load(sys.stdin)['files'] if f['filename']=='llama_cpp_python-$VERSION.tar.gz'))")
    curl -fsSL -o "$src/sdist.tar.gz" "$url"
    echo "$SHA256  $src/sdist.tar.gz" | sha256sum -c -
    tar -xzf "$src/sdist.tar.gz" -C "$src"
    rm "$src/sdist.tar.gz"
  fi
  flags="-DGGML_NATIVE=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
  if grep -qw avx2 /proc/cpuinfo; then flags="$flags -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"; fi
  if grep -qw avx512f /proc/cpuinfo; then flags="$flags -DGGML_AVX512=ON"; fi
  if grep -qw avx512_vnni /proc/cpuinfo; then flags="$flags -DGGML_AVX512_VNNI=ON"; fi
  llama="$src/llama_cpp_python-$VERSION/vendor/llama.cpp"
  echo "building llama-server from $llama with $flags" >&2
  # shellcheck disable=SC2086
  cmake -S "$llama" -B "$DEST/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
    -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF $flags > "$DEST/cmake.log"
  cmake --build "$DEST/build" --target llama-server llama-bench -j "$(nproc)" > "$DEST/build.log"
  mkdir -p "$DEST/bin"
  cp "$DEST/build/bin/llama-server" "$DEST/build/bin/llama-bench" "$DEST/bin/"
fi
"$DEST/bin/llama-server" --version 2>&1 | head -2

if [ ! -f "$DEST/smollm2-fim.gguf" ]; then
  model=$("$CARGO_TARGET_DIR/debug/penwright" models --json |
    python3 -c 'import json,sys; print(next(m["path"] for m in json.load(sys.stdin) if m["isDefault"] and m["installed"]))')
  llama=$(ls -d "$DEST"/src/llama_cpp_python-*/vendor/llama.cpp | head -1)
  # llama.cpp's gguf-py, with what it imports, in a virtual environment of its own
  if [ ! -x "$DEST/venv/bin/python" ]; then
    python3 -m venv "$DEST/venv"
    "$DEST/venv/bin/pip" install -q "numpy<2" tqdm pyyaml
  fi
  # <repo_name>, <reponame>, <file_sep>: special tokens of SmolLM2's vocabulary it never uses
  PYTHONPATH="$llama/gguf-py" "$DEST/venv/bin/python" "$llama/gguf-py/gguf/scripts/gguf_new_metadata.py" \
    "$model" "$DEST/smollm2-fim.gguf.part" --force \
    --special-token-by-id fim_pre 3 --special-token-by-id fim_suf 4 --special-token-by-id fim_mid 5 > /dev/null
  mv "$DEST/smollm2-fim.gguf.part" "$DEST/smollm2-fim.gguf"
fi
echo "llama-server: $DEST/bin/llama-server; FIM model: $DEST/smollm2-fim.gguf"
