#!/usr/bin/env python3
"""Top-1 agreement of Penwright's logits with llama.cpp's on many positions of real text.

The committed fixture (crates/engine/tests/fixtures/smollm2-llamacpp-logits.json) holds 32
positions, several of them near-ties whose winner float rounding decides; this script
measures agreement where that noise averages out: WINDOWS windows of LENGTH tokens from a
real text (Moby-Dick's first chapter, tests/data), each evaluated as one batch from an
empty cache by llama.cpp (llama-cpp-python, built by install-llama-cpp.sh) and by
`penwright logits` on the same file and ids. It prints the agreement on all positions and
on the clear ones (llama.cpp's top two at least CLEAR logits apart), and llama.cpp's
margin at every disagreement. With --write-fixture FILE it also writes each window's ids
and llama.cpp's top-1 token and margin per position (what
crates/engine/tests/parity_smollm2.rs checks on every run).

Usage:
  ~/.cache/penwright/llama-cpp/bin/python scripts/reference/llama_cpp_agreement.py \
      --penwright $CARGO_TARGET_DIR/debug/penwright [--model FILE.gguf] [--length 32] \
      [--windows 24] [--threads 2] [--write-fixture FILE.json]
"""

import argparse
import json
import os
import subprocess
import sys

CLEAR = 0.25
HERE = os.path.dirname(os.path.abspath(__file__))
TEXT = os.path.join(HERE, "..", "..", "tests", "data", "moby-dick-ch1.txt")


def default_model() -> str:
    home = os.environ.get("PENWRIGHT_HOME") or os.path.join(
        os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share"), "penwright"
    )
    return os.path.join(
        home, "models", "smollm2-135m-instruct-q4_1", "SmolLM2-135M-Instruct.Q4_1.gguf"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--penwright", required=True, help="the penwright binary")
    ap.add_argument("--model", default=default_model())
    ap.add_argument("--length", type=int, default=32, help="tokens per window (one batch)")
    ap.add_argument("--windows", type=int, default=24)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--write-fixture", help="write llama.cpp's top-1 and margins here")
    args = ap.parse_args()

    import numpy as np
    from llama_cpp import Llama

    llm = Llama(
        model_path=args.model,
        n_ctx=max(64, args.length),
        n_batch=max(64, args.length),
        n_threads=args.threads,
        n_threads_batch=args.threads,
        logits_all=True,
        verbose=False,
    )
    with open(TEXT, encoding="utf-8") as f:
        ids = llm.tokenize(f.read().encode(), add_bos=False, special=False)
    need = args.length * args.windows
    if len(ids) < need:
        sys.exit(f"the text has {len(ids)} tokens, {need} needed")

    agree = clear = clear_agree = 0
    misses = []
    fixture = []
    for w in range(args.windows):
        window = ids[w * args.length : (w + 1) * args.length]
        llm.reset()
        llm.eval(window)
        ref = np.array(llm.scores[: len(window)], dtype=np.float64)
        out = subprocess.run(
            [
                args.penwright,
                "logits",
                "--device",
                "cpu",
                "--model",
                args.model,
                "--top",
                "1",
                "--ids",
                ",".join(str(i) for i in window),
            ],
            check=True,
            capture_output=True,
            text=True,
            env=dict(os.environ, RAYON_NUM_THREADS=str(args.threads)),
        )
        ours = [row[0][0] for row in json.loads(out.stdout)["top"]]
        entry = {"ids": [int(i) for i in window], "top1": [], "margin": []}
        fixture.append(entry)
        for pos, (row, mine) in enumerate(zip(ref, ours)):
            order = np.argsort(row)[::-1]
            margin = row[order[0]] - row[order[1]]
            entry["top1"].append(int(order[0]))
            entry["margin"].append(round(float(margin), 4))
            is_clear = bool(margin >= CLEAR)
            clear += int(is_clear)
            if mine == int(order[0]):
                agree += 1
                clear_agree += int(is_clear)
            else:
                misses.append((w, pos, round(float(margin), 3)))
    total = args.length * args.windows
    if args.write_fixture:
        import llama_cpp

        with open(args.write_fixture, "w", encoding="utf-8") as f:
            json.dump(
                {
                    "engine": f"llama.cpp via llama-cpp-python {llama_cpp.__version__}",
                    "model": os.path.basename(args.model),
                    "note": f"{args.windows} windows of {args.length} consecutive tokens of "
                    "tests/data/moby-dick-ch1.txt (tokenized by llama.cpp, no BOS), each "
                    f"evaluated as one batch from an empty KV cache, n_threads={args.threads}; "
                    "top1: llama.cpp's arg-max per position, margin: its top logit minus "
                    "its second",
                    "windows": fixture,
                },
                f,
                separators=(",", ":"),
            )
            f.write("\n")
    print(
        json.dumps(
            {
                "model": os.path.basename(args.model),
                "positions": total,
                "agree": agree,
                "clear_positions": clear,
                "clear_agree": clear_agree,
                "misses_window_position_margin": misses,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
