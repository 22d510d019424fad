#!/usr/bin/env python3
"""The torch engine's training step on one CUDA GPU, without Node: the SmolLM2-135M shape at 2048, 8192
and 32768 tokens with the trainer's own code (python/fopeify_train: SDPA / flash attention, activation
checkpointing per layer, bf16 autocast, float32 master weights and AdamW), reporting tokens/s, model FLOP
utilisation (training FLOPs = 3 x forward matmul FLOPs, recomputation not counted, / step time / peak)
and peak GPU memory.

    python3 scripts/gpu-check-train.py [--peak-tflops 790] [--tokens 2048,8192,32768] [--steps 3]

Copy the repository's python/ folder along (the script imports fopeify_torch and fopeify_train from it).
The goal stated in issue 13: >= 30 % MFU at 8192 tokens on an H200 (bf16 peak measured there ~790 TFLOP/s).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "python"))
sys.dont_write_bytecode = True

import torch  # noqa: E402

from fopeify_train.bench import SMOLLM2_135M, random_model, time_steps  # noqa: E402
from fopeify_train.parallel import Placement, checkpoint_layers, torch_version  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", default="2048,8192,32768")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--peak-tflops", type=float, default=790.0, help="the GPU's dense bf16 rate (H200: ~790 measured)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: this check needs a GPU", file=sys.stderr)
        return 2
    if torch_version() < (2, 4):
        print(f"torch {torch.__version__}: the GPU path (SDPA, FSDP2) needs torch >= 2.4", file=sys.stderr)
        return 2
    device = torch.device("cuda", 0)
    torch.cuda.set_device(device)
    torch.backends.cuda.matmul.allow_tf32 = True
    place = Placement(0, 1, 0, device, "single", True)
    model = random_model(SMOLLM2_135M, device)
    checkpoint_layers(model)
    print(f"# {torch.cuda.get_device_name(device)}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    print("| tokens | s/step | tokens/s | TFLOP/s | MFU | peak memory GiB |\n|---:|---:|---:|---:|---:|---:|")
    rows = []
    for t in [int(x) for x in args.tokens.split(",") if x.strip()]:
        try:
            r = time_steps(model, place, t, args.steps, warmup=1)
        except torch.cuda.OutOfMemoryError:
            print(f"| {t} | out of memory | | | | |")
            torch.cuda.empty_cache()
            continue
        r["mfu"] = r["achieved_tflops"] / args.peak_tflops
        rows.append(r)
        print(f"| {t} | {r['step_seconds']:.3f} | {r['tokens_per_s']:.0f} | {r['achieved_tflops']:.1f} | {100 * r['mfu']:.1f} % | {r['peak_memory_bytes'] / 2**30:.2f} |", flush=True)
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
