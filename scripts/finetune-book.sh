#!/usr/bin/env bash
# Fine-tunes the default model on a public-domain book for a few minutes on the CPU and prints
# the job's summary (base and tuned held-out perplexity, tokens/s) and the peak memory.
#
#   scripts/finetune-book.sh BOOK.txt [STEPS] [CHAPTERS] [FINETUNE OPTIONS...]
#
# BOOK.txt: a Project Gutenberg text (the header and licence footer are stripped); it is split
# into chapters ("CHAPTER N" lines), the first CHAPTERS of which (default 40) become the
# documents; the engine holds a tenth of them out. Defaults: 12 steps of 4 × 256 tokens.
# Further options go to `penwright finetune` (e.g. --precision bf16, --dropout 0).
set -euo pipefail
book=${1:?usage: scripts/finetune-book.sh BOOK.txt [STEPS] [CHAPTERS]}
steps=${2:-12}
chapters=${3:-40}
target=${CARGO_TARGET_DIR:-$HOME/.cache/penwright/target}
penwright="$target/debug/penwright"
[[ -x $penwright ]] || { echo "build first: cargo build --workspace" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 "$(dirname "$0")/book-chapters.py" "$book" "$work/docs" "$chapters"
/usr/bin/time -v "$penwright" finetune --device cpu --data "$work/docs" --out "$work/adapter" \
  --steps "$steps" --seq-len 256 --batch 4 --lr 5e-4 --json "${@:4}" 2> "$work/time.txt" | tail -n 1
grep -E "Maximum resident set size|Elapsed \(wall clock\)" "$work/time.txt"
