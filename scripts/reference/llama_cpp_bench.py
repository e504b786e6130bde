#!/usr/bin/env python3
"""Penwright beside llama.cpp on the same GGUF files, prompts and threads, in one run.

For each model (the default model, and with --synthetic the random-weight models of real
shapes that `penwright bench --synthetic` writes), this runs `penwright bench --json` and
then llama.cpp (llama-cpp-python, built from source by install-llama-cpp.sh) on the same
file, each in its own process, and prints both and their ratios:

  prefill tok/s   512-token prompt
  decode tok/s    128 tokens greedily after a 32-token prompt (end-of-text ignored), and
                  the speed of the median step (steadier on a machine with noisy neighbours)
  autocomplete    256-token prompt + 16 new tokens, cold cache, total ms
  load s, peak RSS MB

The prompt is the same text `penwright bench` uses, tokenized by llama.cpp (the two
tokenizers agree on it; see crates/engine/tests/tokenizer_smollm2.rs). Threads: llama.cpp
gets --threads for both batch and decode, Penwright the same count of rayon threads.

With --rounds N the two run alternately N times: on a shared, noisy machine one run of each
can be 15% off, so the table shows the median of each side, the ratio of the medians, and
the lowest and highest ratio of the rounds (each round's two runs are neighbours in time).

Usage:
  scripts/reference/install-llama-cpp.sh
  ~/.cache/penwright/llama-cpp/bin/python scripts/reference/llama_cpp_bench.py \
      [--threads 2] [--rounds 3] [--synthetic smollm2-360m:q4_k_m --synthetic smollm2-1.7b:q4_k_m ...]
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

PARAGRAPH = (
    "It is a truth universally acknowledged, that a single man in possession of a good "
    "fortune, must be in want of a wife. However little known the feelings or views of such a man "
    "may be on his first entering a neighbourhood, this truth is so well fixed in the minds of the "
    "surrounding families, that he is considered the rightful property of some one or other of "
    "their daughters. "
)


def llama_cpp_run(path: str, threads: int) -> dict:
    """Runs in a child process: llama.cpp's figures for one file."""
    import numpy as np
    from llama_cpp import Llama

    t = time.perf_counter()
    llm = Llama(
        model_path=path,
        n_ctx=1024,
        n_batch=512,
        n_threads=threads,
        n_threads_batch=threads,
        verbose=False,
    )
    load = time.perf_counter() - t
    ids = llm.tokenize((PARAGRAPH * 15).encode(), add_bos=False, special=False)
    assert len(ids) >= 512, len(ids)

    def last_logits():
        return llm.scores[llm.n_tokens - 1]

    llm.reset()
    llm.eval(ids[:64])  # warm-up
    llm.reset()
    t = time.perf_counter()
    llm.eval(ids[:512])
    prefill = 512 / (time.perf_counter() - t)

    llm.reset()
    llm.eval(ids[:32])
    t = time.perf_counter()
    steps = []
    for _ in range(128):
        step = time.perf_counter()
        llm.eval([int(np.argmax(last_logits()))])
        steps.append(time.perf_counter() - step)
    decode = 128 / (time.perf_counter() - t)
    decode_median = 1 / statistics.median(steps)

    llm.reset()
    t = time.perf_counter()
    llm.eval(ids[:256])
    for i in range(16):
        token = int(np.argmax(last_logits()))
        if i == 0:
            ttft = (time.perf_counter() - t) * 1e3
        if i < 15:
            llm.eval([token])
    total = (time.perf_counter() - t) * 1e3
    return {
        "prefill_tok_s": prefill,
        "decode_tok_s": decode,
        "decode_median_tok_s": decode_median,
        "autocomplete_ttft_ms": ttft,
        "autocomplete_total_ms": total,
        "load_seconds": load,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def penwright_run(binary: str, spec: list, threads: int) -> dict:
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    out = subprocess.run(
        [binary, "bench", "--json", "--device", "cpu", *spec],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    return json.loads(out.stdout)


def model_path(spec: list) -> str:
    home = os.environ.get("PENWRIGHT_HOME") or os.path.join(
        os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share"), "penwright"
    )
    if spec and spec[0] == "--synthetic":
        shape, _, mix = spec[1].partition(":")
        return os.path.join(home, "bench", f"{shape}-{mix or 'q4_k_m'}.gguf")
    if spec and spec[0] == "--model":
        return spec[1]
    return os.path.join(
        home,
        "models",
        "smollm2-135m-instruct-q4_1",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
    )


ROWS = [
    ("prefill tok/s", "prefill_tok_s", True),
    ("decode tok/s", "decode_tok_s", True),
    ("  median step", "decode_median_tok_s", True),
    ("autocomplete 256+16 ms", "autocomplete_total_ms", False),
    ("load s", "load_seconds", False),
    ("peak RSS MB", "peak_rss_mb", False),
]


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--llama-child":
        print(json.dumps(llama_cpp_run(sys.argv[2], int(sys.argv[3]))))
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--penwright",
        default=os.path.join(
            os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/penwright/target")),
            "debug",
            "penwright",
        ),
    )
    p.add_argument("--synthetic", action="append", default=[], help="SHAPE:MIX, repeatable")
    p.add_argument("--no-default", action="store_true", help="skip the default model")
    p.add_argument("--json", action="store_true", help="print one JSON object per model")
    p.add_argument("--rounds", type=int, default=1, help="alternate runs of each, N times")
    args = p.parse_args()
    specs = ([] if args.no_default else [[]]) + [["--synthetic", s] for s in args.synthetic]
    for spec in specs:
        path = model_path(spec)
        ours_runs, theirs_runs = [], []
        for _ in range(max(1, args.rounds)):
            # the first run writes a synthetic file
            ours_runs.append(penwright_run(args.penwright, spec, args.threads))
            child = subprocess.run(
                [sys.executable, __file__, "--llama-child", path, str(args.threads)],
                check=True,
                capture_output=True,
                text=True,
            )
            theirs_runs.append(json.loads(child.stdout.strip().splitlines()[-1]))
        name = spec[1] if spec else ours_runs[0]["model"]
        size = os.path.getsize(path) / 1e6
        if args.json:
            print(
                json.dumps(
                    {
                        "model": name,
                        "file_mb": size,
                        "penwright": ours_runs if args.rounds > 1 else ours_runs[0],
                        "llama_cpp": theirs_runs if args.rounds > 1 else theirs_runs[0],
                    }
                )
            )
            continue
        rounds = len(ours_runs)
        print(f"\n{name}  ({size:.0f} MB file, {args.threads} threads, {rounds} rounds)")
        spread = f" {'low':>6} {'high':>6}" if rounds > 1 else ""
        print(f"  {'':24} {'Penwright':>10} {'llama.cpp':>10} {'ratio':>8}{spread}")
        for label, key, higher_better in ROWS:

            def ratio(a, b):
                return a / b if higher_better else b / a

            a = statistics.median(r[key] for r in ours_runs)
            b = statistics.median(r[key] for r in theirs_runs)
            line = f"  {label:24} {a:10.1f} {b:10.1f} {ratio(a, b):7.2f}x"
            if rounds > 1:
                each = [ratio(o[key], t[key]) for o, t in zip(ours_runs, theirs_runs)]
                line += f" {min(each):5.2f}x {max(each):5.2f}x"
            print(line)
        print("  (ratio > 1: Penwright better" + ("; medians, and each round's ratios" if rounds > 1 else "") + ")")


if __name__ == "__main__":
    main()
