#!/usr/bin/env python3
"""Reference benchmark: LoRA fine-tuning of a GGUF model with PyTorch + PEFT on CPU.

What it measures
    Training throughput (tokens/s) and peak resident memory of a plain PyTorch
    training loop over a PEFT LoRA adapter, for the same default model, data and
    hyper-parameters that `penwright finetune` uses, so the Rust engine's numbers
    have an outside point of comparison.  Only the training steps are timed
    (model loading and tokenization are not).  Every step processes
    `--batch` rows of `--seq-len` tokens; `tokens_per_s` counts
    seq_len*batch tokens per step over all steps, and
    `first_step_excluded_tokens_per_s` leaves out the first (warm-up) step.

    Setup: model loaded with transformers' GGUF loader (weights dequantized to
    float32); LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0,
    target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"); AdamW lr 2e-4;
    seeded; torch.set_num_threads(--threads).  Training text: the `--data`
    files (default: the chapters of Moby-Dick in shared/data/moby-dick/), with the
    Project Gutenberg header and footer stripped, split into chapters where the
    file has "CHAPTER N." headings, tokenized without BOS, joined with EOS
    between documents and packed into rows of --seq-len tokens.

How to run
    Needs Debian 12's torch and a few pip packages, for the system Python:
        apt-get install -y python3-torch libopenblas0-pthread
    (without OpenBLAS, Debian's torch falls back to the reference BLAS, ~30x slower
    here: not a fair baseline)
        /usr/bin/python3 -m pip install --break-system-packages \\
            transformers==4.46.3 gguf safetensors
        /usr/bin/python3 -m pip install --break-system-packages --no-deps \\
            peft==0.13.2 accelerate==0.34.2
        /usr/bin/python3 -m pip install --break-system-packages psutil pyyaml
    (--no-deps because Debian's torch calls itself 1.13.0a0, which pip reads as
    older than peft's torch>=1.13 and would "fix" by pulling a CUDA torch 2.x.)
    Then, from the repository root:
        /usr/bin/python3 scripts/reference/peft_lora_bench.py            # defaults
        /usr/bin/python3 scripts/reference/peft_lora_bench.py --steps 20 --threads 2 \\
            --model path/to/model.gguf --data some.txt other.txt
    Progress goes to stderr; the result is one JSON line on stdout.

Known quirks handled here (transformers 4.46.3's GGUF support)
    * The GGUF file has no output.weight (SmolLM2 ties lm_head to the token
      embedding) but transformers sets tie_word_embeddings=False for GGUF llama
      models, leaving lm_head randomly initialized; we pass
      tie_word_embeddings=True when the file has no output tensor.
    * The GGUF tokenizer conversion sets eos_token to <|im_start|> (id 1); we take
      the EOS id from the file's tokenizer.ggml.eos_token_id (2, <|im_end|>).

This is a reference for `penwright finetune`; it is not part of the test suite
and nothing in the build or CI runs it.
"""

import argparse
import json
import os
import re
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = (
    Path.home()
    / ".local/share/penwright/models/smollm2-135m-instruct-q4_1/SmolLM2-135M-Instruct.Q4_1.gguf"
)
SHARED_MOBY = REPO.parent / "shared" / "data" / "moby-dick"
FALLBACK_MOBY = REPO / "tests" / "data" / "moby-dick-ch1.txt"

CHAPTER_RE = re.compile(r"^CHAPTER \d+\..*$", re.MULTILINE)


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="GGUF file")
    p.add_argument(
        "--data",
        type=Path,
        nargs="+",
        default=None,
        help="text files or folders of .txt files (default: Moby-Dick in shared/data)",
    )
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def strip_gutenberg(text):
    """Keep what lies between the '*** START OF' and '*** END OF' lines, if present."""
    lines = text.split("\n")
    start = next((i for i, l in enumerate(lines) if l.startswith("*** START OF")), None)
    end = next((i for i, l in enumerate(lines) if l.startswith("*** END OF")), None)
    if start is not None:
        lines = lines[start + 1 : end] if end is not None and end > start else lines[start + 1 :]
    elif end is not None:
        lines = lines[:end]
    return "\n".join(lines)


def documents(paths):
    """Yield documents: the chapters of each file if it has 'CHAPTER N.' headings
    (front matter before the first one dropped), else the whole file."""
    files = []
    for p in paths:
        if p.is_dir():
            files.extend(sorted(q for q in p.iterdir() if q.suffix == ".txt"))
        else:
            files.append(p)
    if not files:
        sys.exit(f"no .txt files in {[str(p) for p in paths]}")
    for f in files:
        text = f.read_text(encoding="utf-8-sig").replace("\r\n", "\n").replace("\r", "\n")
        text = strip_gutenberg(text)
        heads = [m.start() for m in CHAPTER_RE.finditer(text)]
        if len(heads) >= 2:
            bounds = heads + [len(text)]
            for a, b in zip(bounds, bounds[1:]):
                doc = text[a:b].strip()
                if doc:
                    yield doc
        elif text.strip():
            yield text.strip()


def main():
    args = parse_args()
    # Keep every thread pool to --threads before torch/tokenizers start theirs.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    os.environ["TOKENIZERS_PARALLELISM"] = "false"

    import random

    import numpy as np
    import torch
    import gguf
    import peft
    import transformers
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)

    model_path = args.model.expanduser().resolve()
    if not model_path.is_file():
        sys.exit(f"model not found: {model_path}")
    data = args.data
    if data is None:
        data = [SHARED_MOBY if SHARED_MOBY.is_dir() else FALLBACK_MOBY]

    # What the GGUF file itself says (see the module docstring's quirks).
    reader = gguf.GGUFReader(str(model_path))
    tensor_names = {t.name for t in reader.tensors}
    eos_field = reader.fields.get("tokenizer.ggml.eos_token_id")
    gguf_eos = int(eos_field.parts[eos_field.data[0]][0]) if eos_field else None
    del reader

    t0 = time.perf_counter()
    gdir, gname = str(model_path.parent), model_path.name
    tok = AutoTokenizer.from_pretrained(gdir, gguf_file=gname)
    extra = {}
    if "output.weight" not in tensor_names:
        extra["tie_word_embeddings"] = True
    model = AutoModelForCausalLM.from_pretrained(
        gdir, gguf_file=gname, torch_dtype=torch.float32, **extra
    )
    eos = gguf_eos if gguf_eos is not None else tok.eos_token_id
    rss_after_load = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    log(
        f"loaded {gname} in {time.perf_counter() - t0:.1f}s: "
        f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}M params, "
        f"tied lm_head={model.lm_head.weight is model.get_input_embeddings().weight}, "
        f"eos={eos} {tok.convert_ids_to_tokens(eos)!r}"
    )

    # Tokenize documents until there are enough tokens for steps*batch rows.
    need = args.steps * args.batch * args.seq_len
    stream, ndocs = [], 0
    for doc in documents(data):
        if stream:
            stream.append(eos)
        stream.extend(tok.encode(doc, add_special_tokens=False))
        ndocs += 1
        if len(stream) >= need:
            break
    if len(stream) < need:
        # Not enough text: cycle over what there is.
        reps = need // (len(stream) + 1) + 1
        stream = (stream + [eos]) * reps
    rows = torch.tensor(stream[:need], dtype=torch.long).view(
        args.steps, args.batch, args.seq_len
    )
    log(f"data: {ndocs} documents from {[str(p) for p in data]}, {need} tokens used")

    config = LoraConfig(
        r=8,
        lora_alpha=16,
        lora_dropout=0.0,
        target_modules=["q_proj", "v_proj"],
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, config)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log(f"LoRA: {trainable} trainable params")
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr)

    step_s, losses = [], []
    for step in range(args.steps):
        ids = rows[step]
        t = time.perf_counter()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        step_s.append(time.perf_counter() - t)
        losses.append(loss.item())
        log(f"step {step + 1}/{args.steps}: loss {losses[-1]:.4f}, {step_s[-1]:.2f}s")

    per_step = args.batch * args.seq_len
    seconds = sum(step_s)
    rest = sum(step_s[1:])
    result = {
        "steps": args.steps,
        "seq_len": args.seq_len,
        "batch": args.batch,
        "tokens": per_step * args.steps,
        "seconds": round(seconds, 3),
        "tokens_per_s": round(per_step * args.steps / seconds, 2),
        "first_step_excluded_tokens_per_s": (
            round(per_step * (args.steps - 1) / rest, 2) if args.steps > 1 else None
        ),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "torch": torch.__version__,
        "peft": peft.__version__,
        "transformers": transformers.__version__,
        # Extras for sanity checks against the Rust engine.
        "threads": args.threads,
        "trainable_params": trainable,
        "loss_first": round(losses[0], 4),
        "loss_last": round(losses[-1], 4),
        "peak_rss_after_load_mb": round(rss_after_load, 1),
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
