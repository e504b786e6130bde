#!/usr/bin/env python3
"""Throughput and latency of `penwright serve` under 1, 4 and 16 concurrent clients, with the
official openai client; checks that every client got its own answer (greedy answers equal
those given alone, nothing lost or mixed up). Before that, ghost-text latency on the same
model, local against remote: `penwright complete --replay` over one typing session, once on
the CLI's own engine and once with `--endpoint` at the server.

    ~/.cache/penwright/python/bin/python scripts/serve_bench.py [--requests 32] [--max-tokens 32]

Starts `penwright serve` on the default model itself (the binary from the cargo target dir) and
prints one JSON object: per concurrency, requests/s, tokens/s, p50/p95 latency in ms.
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import openai

root = pathlib.Path(__file__).resolve().parent.parent
target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", pathlib.Path.home() / ".cache/penwright/target"))
parser = argparse.ArgumentParser()
parser.add_argument("--requests", type=int, default=32, help="requests per concurrency level")
parser.add_argument("--max-tokens", type=int, default=32)
parser.add_argument("--clients", default="1,4,16")
parser.add_argument("--device", default="cpu")
args = parser.parse_args()

key = "bench-key"
server = subprocess.Popen(
    [str(target / "debug/penwright"), "serve", "--device", args.device, "--port", "0",
     "--api-key", key, "--max-queue", "64"],
    stderr=subprocess.PIPE, text=True,
)
base_url = model = None
for line in server.stderr:
    if line.startswith("penwright: serving "):
        model, rest = line.removeprefix("penwright: serving ").split(" at ", 1)
        base_url = rest.split()[0]
        break
assert base_url, "penwright serve did not start"
threading.Thread(target=lambda: [None for _ in server.stderr], daemon=True).start()
client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=600)



def autocomplete_latency(remote):
    """p50/p95 of ttft and total over a typing session, word by word, on the CLI's engine or
    (remote) through the server."""
    words = ("Call me Ishmael. Some years ago, never mind how long precisely, having little or no "
             "money in my purse, and nothing particular to interest me on shore, I thought I would "
             "sail about a little and see the watery part of the world.").split()
    states = [" ".join(words[:n]) + " " for n in range(4, len(words) + 1)]
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        f.write("\n".join(json.dumps(s) for s in states))
    command = [str(target / "debug/penwright"), "complete", "--replay", f.name, "--json",
               "--max-tokens", "16", "--device", args.device]
    if remote:
        command += ["--endpoint", base_url, "--remote-model", model]
    out = subprocess.run(command, capture_output=True, text=True, check=True,
                         env={**os.environ, "PENWRIGHT_API_KEY": key}).stdout
    os.unlink(f.name)
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    # the first suggestion pays the cold start (model load, first connection)
    rows = rows[1:]
    pick = lambda k, q: round(sorted(r[k] for r in rows)[max(0, int(len(rows) * q) - 1)], 1)
    return {"suggestions": len(rows), "ttft_p50_ms": pick("ttft_ms", 0.5),
            "ttft_p95_ms": pick("ttft_ms", 0.95), "total_p50_ms": pick("total_ms", 0.5),
            "total_p95_ms": pick("total_ms", 0.95)}


latency = {"local": autocomplete_latency(False), "remote": autocomplete_latency(True)}

# Each prompt starts with a word of its own: no two share a cached prefix, so each is
# prefilled whole whatever ran before it, and its greedy answer is the one it gets alone.
# (Prompts sharing a prefix, "... the number 1" after "... the number 0", reuse the cached
# part and prefill only the rest, through other kernels: a near-tie late in the answer
# can then go the other way, which is rounding, not one client's answer given another.)
WORDS = ("Apples Bridges Candles Deserts Engines Forests Gardens Harbors Islands Jewels Kettles "
         "Lanterns Mountains Needles Oceans Pianos Quilts Rivers Saddles Towers Umbrellas Valleys "
         "Wagons Yachts Zebras Anchors Bicycles Clocks Dolphins Eagles Feathers Glaciers Hammers "
         "Insects Jackets Kites Lemons Mirrors Nests Orchards").split()
assert args.requests <= len(WORDS), f"at most {len(WORDS)} requests"
prompts = [f"{w}: write one sentence about them." for w in WORDS[:args.requests]]


def ask(prompt):
    started = time.perf_counter()
    answer = client.completions.create(
        model=model, prompt=prompt, max_tokens=args.max_tokens, temperature=0
    )
    return answer.choices[0].text, answer.usage.completion_tokens, time.perf_counter() - started


alone = {p: ask(p)[0] for p in prompts}
results = {"model": model, "autocomplete": latency, "requests": args.requests,
           "max_tokens": args.max_tokens, "levels": []}
for clients in [int(c) for c in args.clients.split(",")]:
    pending = list(prompts)
    lock = threading.Lock()
    latencies, tokens, answers, errors = [], [], {}, []

    def worker():
        while True:
            with lock:
                if not pending:
                    return
                prompt = pending.pop()
            try:
                text, n, seconds = ask(prompt)
            except Exception as e:  # noqa: BLE001 - counted and reported
                errors.append(repr(e))
                continue
            with lock:
                answers[prompt] = text
                latencies.append(seconds * 1e3)
                tokens.append(n)

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    latencies.sort()
    mixed = [{"prompt": p, "alone": alone[p], "now": text}
             for p, text in answers.items() if alone[p] != text]
    results["levels"].append({
        "clients": clients,
        "requests_per_s": round(len(latencies) / wall, 2),
        "tokens_per_s": round(sum(tokens) / wall, 1),
        "p50_ms": round(statistics.median(latencies), 1),
        "p95_ms": round(latencies[max(0, int(len(latencies) * 0.95) - 1)], 1),
        "errors": len(errors),
        "answers_differing_from_alone": len(mixed),
        "differing": mixed,
    })
server.terminate()
server.wait()
print(json.dumps(results))
sys.exit(0 if all(l["errors"] == 0 and not l["differing"] for l in results["levels"]) else 1)
