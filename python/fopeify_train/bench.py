"""Training-step speed of the torch engine: one optimizer step (forward, backward, AdamW, clipping) of a
model with the trainer's own code path (parallel.py's device setup: SDPA, activation checkpointing and bf16
autocast on CUDA; eager float32 on the CPU), on random tokens. Used by `npm run bench -- torch-train` (CPU)
and scripts/gpu-check-train.py (one GPU).

    python -m fopeify_train.bench --tokens 512,2048 [--device cpu|cuda] [--steps 1]   # one JSON line per length
"""
from __future__ import annotations

import argparse
import json
import time
from typing import Any, Dict, List, Optional, Sequence

import torch

from fopeify_torch.fope_core import CausalLM
from fopeify_torch.fope_spec import ModelSpec, parse_model_config

from .optim import AdamW
from .parallel import Placement, attention_for, checkpoint_layers, set_cpu_threads
from .trainer import autocast, chunk_loss

SMOLLM2_135M: Dict[str, Any] = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "vocab_size": 49152,
    "max_position_embeddings": 32768,
    "rms_norm_eps": 1e-5,
    "rope_theta": 100000.0,
    "tie_word_embeddings": True,
}


def forward_flops(spec: ModelSpec, tokens: int) -> float:
    """Matmul FLOPs of one forward pass (bench/train.mjs's forwardFlops: causal attention counts the keys each
    query sees). A training step is 3x this; recomputation is not counted (the usual MFU accounting)."""
    h, i, n_h, n_kv, d = spec.hidden_size, spec.intermediate_size, spec.num_heads, spec.num_kv_heads, spec.head_dim
    linear = 2 * tokens * (h * n_h * d + 2 * h * n_kv * d + n_h * d * h + 3 * h * i)
    attention = 2 * 2 * n_h * d * (tokens * (tokens + 1) / 2)
    return spec.num_layers * (linear + attention) + 2 * tokens * h * spec.vocab_size


def random_model(config: Dict[str, Any], device: torch.device, seed: int = 1) -> CausalLM:
    torch.manual_seed(seed)
    model = CausalLM(parse_model_config(config))
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.02)
    return model.to(device).train()


def time_steps(model: CausalLM, place: Placement, tokens: int, steps: int, warmup: int = 1) -> Dict[str, Any]:
    """Median seconds of `steps` optimizer steps at `tokens` tokens (after `warmup` untimed ones)."""
    params = {n: p for n, p in model.named_parameters()}
    opt = AdamW(params, (0.9, 0.95), 1e-8, 0.0)
    attention = attention_for(place)
    gen = torch.Generator().manual_seed(0)
    times: List[float] = []
    loss = float("nan")
    if place.cuda:
        torch.cuda.reset_peak_memory_stats(place.device)
    for i in range(warmup + steps):
        ids = torch.randint(0, model.spec.vocab_size, (1, tokens + 1), generator=gen).to(place.device)
        if place.cuda:
            torch.cuda.synchronize(place.device)
        t0 = time.perf_counter()
        with autocast(place):
            out = chunk_loss(model, ids, attention)
        out.backward()
        opt.apply(1e-5, 1.0)
        for p in params.values():
            p.grad = None
        if place.cuda:
            torch.cuda.synchronize(place.device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
        loss = float(out.detach())
    seconds = sorted(times)[len(times) // 2]
    flops = 3 * forward_flops(model.spec, tokens)
    return {
        "tokens": tokens,
        "step_seconds": seconds,
        "tokens_per_s": tokens / seconds,
        "train_tflop_per_step": flops / 1e12,
        "achieved_tflops": flops / seconds / 1e12,
        "peak_memory_bytes": torch.cuda.max_memory_allocated(place.device) if place.cuda else None,
        "loss": loss,
        "device": place.device.type,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="fopeify_train.bench")
    parser.add_argument("--tokens", default="512,2048")
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    cuda = args.device.startswith("cuda")
    device = torch.device(args.device)
    place = Placement(0, 1, 0, device, "single", cuda)
    if not cuda:
        set_cpu_threads(1)
    model = random_model(SMOLLM2_135M, device)
    if cuda:
        checkpoint_layers(model)
    for t in [int(x) for x in args.tokens.split(",") if x.strip()]:
        print(json.dumps(time_steps(model, place, t, args.steps, args.warmup)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
