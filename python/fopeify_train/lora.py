"""LoRA as src/train/lora.ts defines it: `W x + scale · B (A x)` on each target projection, with PEFT's
tensor names (`<module>.lora_A.weight` `[r, in]`, `<module>.lora_B.weight` `[out, r]`), so parameter names
here are fopeify's names. The initial A and B come from the job (fopeify draws them: one implementation of
the seeded init)."""
from __future__ import annotations

from typing import Dict, List

import torch
from torch import nn


class LoraLinear(nn.Linear):
    """nn.Linear plus a rank-r update; `weight` / `bias` keep their names, the factors are submodules."""

    def __init__(self, base: nn.Linear, a: torch.Tensor, b: torch.Tensor, scale: float) -> None:
        super().__init__(base.in_features, base.out_features, bias=base.bias is not None)
        self.weight = base.weight
        self.bias = base.bias
        self.lora_A = nn.Linear(base.in_features, a.shape[0], bias=False)
        self.lora_B = nn.Linear(a.shape[0], base.out_features, bias=False)
        with torch.no_grad():
            self.lora_A.weight.copy_(a)
            self.lora_B.weight.copy_(b)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.weight, self.bias) + self.lora_B(self.lora_A(x)) * self.scale


def module_of(name: str) -> str:
    """`model.layers.0.self_attn.q_proj.weight` -> `model.layers.0.self_attn.q_proj`."""
    if not name.endswith(".weight"):
        raise ValueError(f"not a weight name: {name}")
    return name[: -len(".weight")]


def attach_lora(model: nn.Module, bases: List[str], init: Dict[str, torch.Tensor], scale: float) -> None:
    """Replace each target nn.Linear by a LoraLinear holding the given initial factors."""
    for base in bases:
        path = module_of(base)
        parent_name, _, child = path.rpartition(".")
        parent = model.get_submodule(parent_name)
        linear = getattr(parent, child)
        if not isinstance(linear, nn.Linear):
            raise ValueError(f"LoRA target {path} is not a linear layer")
        setattr(parent, child, LoraLinear(linear, init[f"{path}.lora_A.weight"], init[f"{path}.lora_B.weight"], scale))


def set_trainable(model: nn.Module, names: List[str]) -> Dict[str, nn.Parameter]:
    """Freeze every parameter except `names` (FoPE coefficients are buffers: never trained). Returns them by name."""
    wanted = set(names)
    found: Dict[str, nn.Parameter] = {}
    for name, p in model.named_parameters():
        p.requires_grad_(name in wanted)
        if name in wanted:
            found[name] = p
    missing = sorted(wanted - set(found))
    if missing:
        raise ValueError(f"the job trains {missing[0]}, which the model does not have")
    return found
