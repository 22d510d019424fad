"""The learning-rate schedule and AdamW exactly as src/train/schedule.ts and src/train/optimizer.ts:
decoupled weight decay on the pre-update weight, eps added after the bias-corrected square root,
bias correction with step t = (steps done) + 1, and global-norm clipping by max / (norm + 1e-6) applied
only when the norm exceeds max. The moments are float32 tensors shaped (and, under FSDP, sharded)
like their parameters."""
from __future__ import annotations

import math
from typing import Dict, List, Tuple

import torch
from torch import nn

from .job import Settings


def learning_rate(s: Settings, step: int) -> float:
    """Learning rate at a 0-based optimizer step: linear warmup, then constant, cosine or linear decay."""
    if s.warmup_steps > 0 and step < s.warmup_steps:
        return (s.lr * (step + 1)) / s.warmup_steps
    if s.schedule == "constant":
        return s.lr
    span = max(1, s.steps - s.warmup_steps)
    progress = min(1.0, max(0.0, (step - s.warmup_steps) / span))
    low = s.lr * s.min_lr_ratio
    if s.schedule == "linear":
        return s.lr - (s.lr - low) * progress
    return low + 0.5 * (s.lr - low) * (1 + math.cos(math.pi * progress))


def local(t: torch.Tensor) -> torch.Tensor:
    """A DTensor's local shard (FSDP2), or the tensor itself."""
    to_local = getattr(t, "to_local", None)
    return to_local() if callable(to_local) else t


def global_grad_norm(params: List[nn.Parameter], sharded: bool) -> float:
    """L2 norm of every gradient together, summed in float64 (as optimizer.ts sums in JS numbers).
    Sharded gradients (FSDP) add their shards' squares over all ranks."""
    total = torch.zeros((), dtype=torch.float64)
    for p in params:
        if p.grad is not None:
            g = local(p.grad).detach()
            total = total + g.to(device="cpu", dtype=torch.float64).pow(2).sum()
    if sharded:
        import torch.distributed as dist

        device = params[0].device
        t = total.to(device)
        dist.all_reduce(t)
        total = t.cpu()
    return math.sqrt(float(total))


class AdamW:
    """AdamW over named parameters with state that saves and restores by name."""

    def __init__(self, params: Dict[str, nn.Parameter], betas: Tuple[float, float], eps: float, weight_decay: float) -> None:
        self.params = params
        self.betas = betas
        self.eps = eps
        self.weight_decay = weight_decay
        self.step = 0
        self.m = {n: torch.zeros_like(local(p), dtype=torch.float32) for n, p in params.items()}
        self.v = {n: torch.zeros_like(local(p), dtype=torch.float32) for n, p in params.items()}

    @torch.no_grad()
    def apply(self, lr: float, max_grad_norm: float, sharded: bool = False) -> float:
        """One update from the parameters' gradients; returns the pre-clipping global norm."""
        norm = global_grad_norm(list(self.params.values()), sharded)
        clip = max_grad_norm / (norm + 1e-6) if max_grad_norm > 0 and norm > max_grad_norm else 1.0
        b1, b2 = self.betas
        t = self.step + 1
        c1 = 1 - b1**t
        c2 = 1 - b2**t
        decay = lr * self.weight_decay
        for name, p in self.params.items():
            if p.grad is None:
                continue
            g = local(p.grad).to(torch.float32)
            if clip != 1.0:
                g = g * clip
            m, v = self.m[name], self.v[name]
            m.mul_(b1).add_(g, alpha=1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            w = local(p.data)
            update = (m / c1) / ((v / c2).sqrt() + self.eps)
            w.sub_((update * lr + w.to(torch.float32) * decay).to(w.dtype))
        self.step += 1
        return norm
