"""Processes, devices and how the model is spread over them.

- one process: the model as it is;
- several processes, any torch: DistributedDataParallel (gloo on CPU, NCCL on GPU);
- several CUDA processes with torch >= 2.4: FSDP2 `fully_shard` per decoder layer and at the root.
On CUDA also: bf16 autocast, activation checkpointing per decoder layer, and
`scaled_dot_product_attention` (flash attention) for causal attention without a sliding window.
The FSDP2 / SDPA / checkpointing paths need torch >= 2.4 and a GPU; they are guarded by version and device
checks, and the CPU path (DDP + gloo, eager attention) is what runs on Debian's torch 1.13.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Optional, Tuple

import torch
import torch.distributed as dist
from torch import nn

from fopeify_torch.fope_core import eager_attention, repeat_kv


def torch_version() -> Tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", torch.__version__)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


@dataclass(frozen=True)
class Placement:
    rank: int
    world: int
    local_rank: int
    device: torch.device
    strategy: str  # "single" | "ddp" | "fsdp"
    cuda: bool

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def fsdp_available() -> bool:
    return torch_version() >= (2, 4) and torch.cuda.is_available()


def choose_strategy(requested: str, world: int, cuda: bool) -> str:
    """`auto`: FSDP2 on several GPUs with torch >= 2.4, else DDP on several processes, else single."""
    if world == 1:
        return "single"
    if requested == "fsdp" and not (cuda and torch_version() >= (2, 4)):
        raise RuntimeError(f"FSDP2 needs torch >= 2.4 and CUDA (this is torch {torch.__version__}, CUDA {'available' if cuda else 'unavailable'}); use --parallel ddp")
    if requested in ("fsdp", "ddp"):
        return requested
    return "fsdp" if cuda and torch_version() >= (2, 4) else "ddp"


def set_cpu_threads(local_processes: int) -> None:
    """Share this machine's cores among the processes on it, unless OMP_NUM_THREADS says otherwise.

    Why: some OpenMP builds (Debian's torch 1.13 among them) start with one thread whatever the core count,
    and torchrun only sets OMP_NUM_THREADS=1 itself; a CPU run would then leave cores idle.
    """
    if os.environ.get("OMP_NUM_THREADS"):
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(max(1, cores // max(1, local_processes)))


def init_processes(requested: str) -> Placement:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available() and os.environ.get("FOPEIFY_TORCH_DEVICE", "") != "cpu"
    if cuda:
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
        set_cpu_threads(int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return Placement(rank, world, local_rank, device, choose_strategy(requested, world, cuda), cuda)


def sdpa_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: Optional[torch.Tensor],
    scaling: float,
    dropout: float = 0.0,
    sliding_window: Optional[int] = None,
    **kwargs: Any,
) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Causal `scaled_dot_product_attention` (flash attention on GPUs) with fope_core's attention interface;
    falls back to the eager path for a sliding window shorter than the sequence or a cached prefix."""
    tq, tk = query.shape[-2], key.shape[-2]
    if tq != tk or (sliding_window is not None and sliding_window < tk):
        return eager_attention(module, query, key, value, attention_mask, scaling, dropout, sliding_window=sliding_window, **kwargs)
    n_rep = query.shape[1] // key.shape[1]
    out = nn.functional.scaled_dot_product_attention(query, repeat_kv(key, n_rep), repeat_kv(value, n_rep), is_causal=True, dropout_p=dropout, scale=scaling)
    return out.transpose(1, 2).contiguous(), None


def attention_for(place: Placement) -> Callable[..., Tuple[torch.Tensor, Optional[torch.Tensor]]]:
    if place.cuda and hasattr(nn.functional, "scaled_dot_product_attention") and torch_version() >= (2, 1):
        return sdpa_attention
    return eager_attention


def checkpoint_layers(model: nn.Module) -> None:
    """Recompute each decoder layer in the backward pass (activations kept: the residual stream only)."""
    from torch.utils.checkpoint import checkpoint

    for layer in model.model.layers:  # type: ignore[union-attr]
        inner = layer.forward

        def forward(*args: Any, _inner: Callable[..., torch.Tensor] = inner, **kwargs: Any) -> torch.Tensor:
            return checkpoint(_inner, *args, use_reentrant=False, **kwargs)

        layer.forward = forward  # type: ignore[method-assign]


def fully_shard_fn() -> Callable[..., Any]:
    try:
        from torch.distributed.fsdp import fully_shard  # torch >= 2.6
    except ImportError:
        from torch.distributed._composable.fsdp import fully_shard  # torch 2.4 / 2.5
    return fully_shard


def distribute(model: nn.Module, place: Placement) -> nn.Module:
    """The module the training loop calls: the model itself, a DDP wrapper, or the model sharded in place."""
    model.to(place.device)
    if place.cuda:
        checkpoint_layers(model)
    if place.strategy == "fsdp":
        shard = fully_shard_fn()
        for layer in model.model.layers:  # type: ignore[union-attr]
            shard(layer)
        shard(model)
        return model
    if place.strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[place.local_rank] if place.cuda else None)
    return model


def all_reduce_sum(value: float, place: Placement) -> float:
    if place.world == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=place.device if place.cuda else "cpu")
    dist.all_reduce(t)
    return float(t.item())


def barrier(place: Placement) -> None:
    if place.world > 1:
        dist.barrier()


def full_tensor(t: torch.Tensor) -> torch.Tensor:
    """The whole tensor on every rank (a collective for FSDP2 DTensors; every rank must call it)."""
    gather = getattr(t, "full_tensor", None)
    return (gather() if callable(gather) else t).detach().to("cpu", torch.float32)
