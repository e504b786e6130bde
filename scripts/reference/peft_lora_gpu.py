#!/usr/bin/env python3
"""Reference benchmark: LoRA fine-tuning with PyTorch + PEFT on a CUDA GPU.

The GPU counterpart of peft_lora_bench.py, for a Hugging Face folder (config.json,
model.safetensors, tokenizer.json) such as the one scripts/gpu-check.sh makes. It trains
r=8 LoRA on q_proj and v_proj (AdamW, lr 2e-4, dropout 0.05 as `penwright finetune`'s
default) over the packed tokens of --data, and prints one JSON line: tokens/s over all
steps and without the first, peak GPU memory, first and last loss. --dtype bf16 runs the
frozen base model in bfloat16 (the LoRA factors stay float32, as PEFT keeps them).

    python3 scripts/reference/peft_lora_gpu.py --model DIR --data a.txt b.txt \
        [--steps 8] [--seq-len 256] [--batch 4] [--dtype f32|bf16]
"""

import argparse
import json
import sys
import time


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--data", nargs="+", required=True)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
    args = p.parse_args()

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, torch_dtype=dtype).cuda()
    eos = tok.eos_token_id if tok.eos_token_id is not None else 2
    stream = []
    for f in args.data:
        if stream:
            stream.append(eos)
        stream.extend(tok.encode(open(f, encoding="utf-8").read(), add_special_tokens=False))
    need = args.steps * args.batch * args.seq_len
    stream = (stream * (need // len(stream) + 1))[:need]
    rows = torch.tensor(stream, dtype=torch.long).view(args.steps, args.batch, args.seq_len).cuda()

    config = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05,
                        target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    model = get_peft_model(model, config)
    for n, prm in model.named_parameters():
        if prm.requires_grad:
            prm.data = prm.data.float()
    model.train()
    opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=2e-4)
    torch.cuda.reset_peak_memory_stats()
    times, losses = [], []
    for step in range(args.steps):
        torch.cuda.synchronize()
        t = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=args.dtype == "bf16"):
            loss = model(input_ids=rows[step], labels=rows[step]).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
        print(f"step {step + 1}: loss {losses[-1]:.4f} {times[-1]:.3f}s", file=sys.stderr)
    per = args.batch * args.seq_len
    print(json.dumps({
        "dtype": args.dtype,
        "seq_len": args.seq_len,
        "batch": args.batch,
        "steps": args.steps,
        "tokens_per_s": round(per * args.steps / sum(times), 1),
        "first_step_excluded_tokens_per_s":
            round(per * (args.steps - 1) / sum(times[1:]), 1) if args.steps > 1 else None,
        "peak_gpu_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1),
        "loss_first": round(losses[0], 4),
        "loss_last": round(losses[-1], 4),
        "gpu": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
    }), flush=True)


if __name__ == "__main__":
    main()
