#!/usr/bin/env bash
# Opt-in check of the cluster fine-tuning loop on this machine's CPU, with the real trainer:
#   penwright finetune export  →  the exported train_trl.py (TRL + PEFT) runs a few steps
#   →  its PEFT adapter imports back: `penwright finetune measure` scores the export's
#   heldout.jsonl without and with it, and `penwright perplexity --adapter` loads it.
# The base is the default model, converted once from its GGUF to a Hugging Face folder
# (transformers' GGUF loader) under ~/.cache/penwright/reference/.
#
# Needs PyTorch for the system Python (as scripts/reference/peft_lora_bench.py says):
#   apt-get install -y python3-torch libopenblas0-pthread
#   /usr/bin/python3 -m pip install --break-system-packages transformers==4.46.3 gguf safetensors \
#       datasets==3.1.0 rich jinja2 "numpy<2" "pandas<2.3" "pyarrow<19"
#   /usr/bin/python3 -m pip install --break-system-packages --no-deps peft==0.13.2 \
#       accelerate==0.34.2 trl==0.12.2
# (--no-deps: Debian's torch calls itself 1.13.0a0, which pip would "fix" with a CUDA torch;
# NumPy 1.x because Debian's torch is built against it.)
#
#   scripts/reference/trl_export_check.sh [STEPS]      # default 3 steps
# Prints one JSON line: the TRL run's held-out loss, and base → tuned perplexity as Penwright
# measures the imported adapter. Exits non-zero when any step fails.
set -euo pipefail
cd "$(dirname "$0")/../.."
STEPS="${1:-3}"
PY=/usr/bin/python3
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/penwright/target}"
PENWRIGHT="$CARGO_TARGET_DIR/debug/penwright"
[ -x "$PENWRIGHT" ] || { echo "build first: cargo build --workspace" >&2; exit 1; }
for m in torch transformers peft trl datasets gguf; do
  "$PY" -c "import $m" 2>/dev/null || { echo "missing Python module $m: see this script's header" >&2; exit 1; }
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
model=$("$PENWRIGHT" models --json | "$PY" -c 'import json,sys; print(next(m["path"] for m in json.load(sys.stdin) if m["isDefault"] and m["installed"]))')
hf="$HOME/.cache/penwright/reference/smollm2-135m-instruct-hf"
if [ ! -f "$hf/config.json" ]; then
  echo "converting $model to a Hugging Face folder at $hf" >&2
  "$PY" - "$model" "$hf" <<'EOF'
import pathlib, sys
import gguf as gguf_py
from transformers import AutoModelForCausalLM, AutoTokenizer
path = pathlib.Path(sys.argv[1])
out = pathlib.Path(sys.argv[2])
kw = {"gguf_file": path.name}
# SmolLM2 ties its head to the embedding (the file has no output.weight); transformers'
# GGUF loader would leave the head untied and random
if "output.weight" not in {t.name for t in gguf_py.GGUFReader(str(path)).tensors}:
    kw["tie_word_embeddings"] = True
AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name).save_pretrained(out)
AutoModelForCausalLM.from_pretrained(path.parent, **kw).save_pretrained(out)
EOF
fi

# the documents: chapters of the book in tests/data, split by paragraph into a few files
"$PY" - "$work/docs" <<'EOF'
import pathlib, sys
out = pathlib.Path(sys.argv[1]); out.mkdir()
text = pathlib.Path("tests/data/moby-dick-ch1.txt").read_text()
paras = [p for p in text.split("\n\n") if p.strip()]
for i in range(8):
    (out / f"part{i}.md").write_text("\n\n".join(paras[i::8]))
EOF
"$PENWRIGHT" finetune export --data "$work/docs" --out "$work/export" \
  --base-model "$hf" --seq-len 128 --batch 1 --steps "$STEPS" --lr 1e-3 > "$work/export.json"
echo "exported: $(cat "$work/export.json")" >&2

( cd "$work/export" && OMP_NUM_THREADS="$(nproc)" "$PY" train_trl.py --max-steps "$STEPS" ) > "$work/trl.out" 2> "$work/trl.err" || {
  tail -30 "$work/trl.err" >&2; exit 1; }
[ -f "$work/export/adapter/adapter_config.json" ] || { echo "the TRL run wrote no adapter" >&2; exit 1; }

measured=$("$PENWRIGHT" finetune measure --device cpu --adapter "$work/export/adapter" \
  --data "$work/export/heldout.jsonl")
"$PENWRIGHT" perplexity --device cpu --adapter "$work/export/adapter" \
  --file "$work/docs/part0.md" --max-tokens 256 > "$work/ppl.json"
"$PY" - "$work/trl.out" "$measured" "$work/ppl.json" <<'EOF'
import json, pathlib, sys
trl = json.loads(pathlib.Path(sys.argv[1]).read_text().strip().splitlines()[-1])
measured = json.loads(sys.argv[2])
ppl = json.loads(pathlib.Path(sys.argv[3]).read_text())
print(json.dumps({"trl_heldout": trl["heldout"], "penwright_measure": measured,
                  "perplexity_with_adapter": ppl["perplexity"]}))
assert measured["basePpl"] > 1 and measured["tunedPpl"] > 1
EOF
