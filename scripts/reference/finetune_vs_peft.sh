#!/usr/bin/env bash
# Side by side, in one run: `penwright finetune` and PyTorch + PEFT (peft_lora_bench.py) train
# the same LoRA (r=8, alpha 16, q_proj/v_proj, no dropout, AdamW 2e-4) on the same GGUF file
# and text, seq 256 × batch 4, the same threads; prints each one's training tokens/s and peak
# RSS and the ratios as one JSON object. Opt-in (needs the PEFT setup peft_lora_bench.py
# describes); nothing in CI runs it.
#
#   scripts/reference/finetune_vs_peft.sh [STEPS] [DATA...]
#
# STEPS defaults to 6; DATA to the Moby-Dick chapters in ../shared/data (split into chapters).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
steps=${1:-6}
shift || true
target=${CARGO_TARGET_DIR:-$HOME/.cache/penwright/target}
penwright="$target/debug/penwright"
[[ -x $penwright ]] || { echo "build first: cargo build --workspace" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if (($# == 0)); then
  book="$repo/../shared/data/moby-dick/mobydick.txt"
  python3 "$repo/scripts/book-chapters.py" "$book" "$work/docs" 40
  set -- "$work"/docs/*.txt
fi
model=$("$penwright" models --json | python3 -c "import json,sys; print(next(m['path'] for m in json.load(sys.stdin) if m.get('isDefault')))" 2>/dev/null || true)
[[ -n $model ]] || model="$HOME/.local/share/penwright/models/smollm2-135m-instruct-q4_1/SmolLM2-135M-Instruct.Q4_1.gguf"
threads=$(nproc)

/usr/bin/time -f "%M" -o "$work/peft.rss" /usr/bin/python3 "$here/peft_lora_bench.py" \
  --model "$model" --steps "$steps" --threads "$threads" --data "$@" > "$work/peft.json" 2> "$work/peft.err" ||
  { cat "$work/peft.err" >&2; exit 1; }
/usr/bin/time -f "%M" -o "$work/penwright.rss" "$penwright" finetune --device cpu --model "$model" \
  --data "$@" --out "$work/adapter" --steps "$steps" --seq-len 256 --batch 4 --lr 2e-4 \
  --dropout 0 --eval-every 0 --checkpoint-every 0 --heldout-max-tokens 256 --json \
  > "$work/penwright.jsonl" 2> "$work/penwright.err" || { cat "$work/penwright.err" >&2; exit 1; }

python3 - "$work" <<'PY'
import json, sys
w = sys.argv[1]
peft = json.load(open(f"{w}/peft.json"))
ours = json.loads(open(f"{w}/penwright.jsonl").read().strip().splitlines()[-1])
rss = lambda name: int(open(f"{w}/{name}.rss").read().split()[-1]) / 1024
out = {
    "steps": peft["steps"],
    "penwright_tokens_per_s": round(ours["tokens_per_s"], 1),
    "peft_tokens_per_s": peft["tokens_per_s"],
    "tokens_per_s_ratio": round(ours["tokens_per_s"] / peft["tokens_per_s"], 2),
    "penwright_peak_rss_mb": round(rss("penwright")),
    "peft_peak_rss_mb": round(rss("peft")),
    "peak_rss_ratio": round(rss("penwright") / rss("peft"), 2),
    "penwright_phases_s": ours.get("phases"),
}
print(json.dumps(out))
PY
