#!/usr/bin/env bash
# The fine-tuning checks that need a real GPU, in one run (a few minutes on an H200):
# training throughput in f32, f16 and bf16 (each precision first passes the engine's
# correctness probe or is refused), a run made to exhaust GPU memory (it must end with a
# clear message, not hang), inference speed, and PyTorch + PEFT on the same GPU for scale.
#
#   scripts/gpu-check.sh PENWRIGHT SHAPE_DIR BOOK.txt OUT_DIR [TEMPLATE.gguf]
#
# PENWRIGHT: a `penwright` binary. SHAPE_DIR: config.json + tokenizer.json of the default
# model's architecture (SmolLM2-135M); a model of that shape with random weights is made here
# with transformers (the machine may have no copy of the real weights), so throughput and
# memory are the default model's while perplexities mean nothing. BOOK.txt: a Project
# Gutenberg text, split into chapters as scripts/finetune-book.sh does. TEMPLATE: the
# default model's metadata without weights (`penwright bench --write-template FILE`, 2 MB);
# with it, inference is also measured on random-weight models of real shapes (Q4_K_M and
# Q8_0, up to SmolLM2-1.7B), with the weights packed on the GPU. Results: one line per run
# on stdout, the JSON event streams and stderr of each run in OUT_DIR.
set -uo pipefail
pw=${1:?usage: scripts/gpu-check.sh PENWRIGHT SHAPE_DIR BOOK.txt OUT_DIR}
shape=${2:?shape dir}
book=${3:?book}
out=${4:?out dir}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
mkdir -p "$out"

python3 - "$shape" "$work/model" <<'PY' || exit 1
import shutil, sys, torch
from transformers import LlamaConfig, LlamaForCausalLM
shape, dest = sys.argv[1:]
config = LlamaConfig.from_pretrained(shape)
config.tie_word_embeddings = True
torch.manual_seed(0)
model = LlamaForCausalLM(config)
model.save_pretrained(dest, safe_serialization=True)
for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
    try:
        shutil.copy(f"{shape}/{f}", dest)
    except FileNotFoundError:
        pass
print(f"random {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M-parameter model of the default shape", file=sys.stderr)
PY

python3 "$here/book-chapters.py" "$book" "$work/docs"

# name, time limit (s), then options for `penwright finetune`
run() {
  local name=$1 limit=$2
  shift 2
  local t0=$SECONDS
  timeout "$limit" "$pw" finetune --model "$work/model" --device gpu --data "$work/docs" \
    --out "$work/$name" --json --eval-every 0 "$@" >"$out/$name.jsonl" 2>"$out/$name.err"
  local rc=$?
  echo "== $name: exit $rc after $((SECONDS - t0)) s"
  grep -h '"event":"device"' "$out/$name.jsonl" | head -n 1
  tail -n 1 "$out/$name.jsonl" | grep -v '"event":"device"'
  grep -i -m 3 -E "error|panicked|out of memory" "$out/$name.err"
}

run f32 120 --steps 8 --seq-len 256 --batch 4
run f16 80 --steps 8 --seq-len 256 --batch 4 --precision f16
run bf16 60 --steps 8 --seq-len 256 --batch 4 --precision bf16
# attention scores alone: 16 × 9 heads × 8192² × 4 bytes = 39 GB a layer, 30 layers
run oom 60 --steps 2 --seq-len 8192 --batch 16 --checkpoint-every 1
run f32-big 80 --steps 6 --seq-len 512 --batch 16
run f16-big 60 --steps 6 --seq-len 512 --batch 16 --precision f16

echo "== inference (penwright bench)"
timeout 60 "$pw" bench --model "$work/model" --device gpu --json 2>"$out/bench.err" | tee "$out/bench.json"
if [ -n "${5:-}" ]; then
  for spec in smollm2-135m:q4_1 smollm2-1.7b:q4_k_m smollm2-1.7b:q8_0; do
    echo "== inference, synthetic $spec (weights packed on the GPU)"
    PENWRIGHT_HOME="$work/home" timeout 120 "$pw" bench --synthetic "$spec" --template "$5" \
      --device gpu --json 2>>"$out/bench.err" | tee -a "$out/bench.json"
  done
fi

peft() {
  echo "== PyTorch + PEFT $*"
  timeout 60 python3 "$here/reference/peft_lora_gpu.py" --model "$work/model" \
    --data "$work"/docs/*.txt "$@" 2>>"$out/peft.err"
}
peft --steps 8 --seq-len 256 --batch 4 --dtype f32
peft --steps 6 --seq-len 512 --batch 16 --dtype f32
peft --steps 6 --seq-len 512 --batch 16 --dtype bf16
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv
