#!/usr/bin/env bash
# Builds llama-cpp-python (llama.cpp) from source for the side-by-side benchmarks, into a
# virtual environment under ~/.cache/penwright/llama-cpp (nothing of it is committed).
# The CPU features are named, not `-march=native`: on these machines llama.cpp built
# natively dies with SIGILL in its AMX path although /proc/cpuinfo lists AMX.
set -euo pipefail
VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
VENV="${LLAMA_CPP_VENV:-$HOME/.cache/penwright/llama-cpp}"
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import llama_cpp, sys; sys.exit(llama_cpp.__version__ != '$VERSION')" 2>/dev/null; then
  echo "llama-cpp-python $VERSION: present in $VENV"
  exit 0
fi
python3 -m venv "$VENV"
flags="-DGGML_NATIVE=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
if grep -qw avx2 /proc/cpuinfo; then flags="$flags -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"; fi
if grep -qw avx512f /proc/cpuinfo; then flags="$flags -DGGML_AVX512=ON"; fi
if grep -qw avx512_vnni /proc/cpuinfo; then flags="$flags -DGGML_AVX512_VNNI=ON"; fi
if grep -qw avx512vbmi /proc/cpuinfo; then flags="$flags -DGGML_AVX512_VBMI=ON"; fi
if grep -qw avx512_bf16 /proc/cpuinfo; then flags="$flags -DGGML_AVX512_BF16=ON"; fi
echo "building llama-cpp-python $VERSION with $flags (several minutes on 2 cores)"
CMAKE_ARGS="$flags" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
  "$VENV/bin/pip" install --no-cache-dir --no-binary llama-cpp-python "llama-cpp-python==$VERSION"
"$VENV/bin/python" -c "import llama_cpp; print('llama-cpp-python', llama_cpp.__version__)"
