"""Small real models for the Python tests: a config dict in fopeify's FoPE naming and random weights."""
from __future__ import annotations

import json
import os
import shutil
from typing import Any, Dict, Optional

import torch

from fopeify_torch import REMOTE_CODE_FILES, CausalLM, parse_model_config
from fopeify_torch.fope_safetensors import write_safetensors

PACKAGE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fopeify_torch")


def tiny_config(family: str = "llama", fope: bool = True, sep_head: bool = True, k: Optional[int] = 3, layout: str = "shared", **extra: Any) -> Dict[str, Any]:
    stem = {"llama": "Llama", "mistral": "Mistral", "qwen2": "Qwen2", "qwen3": "Qwen3"}[family]
    cfg: Dict[str, Any] = {
        "architectures": [f"{stem}ForCausalLM"],
        "model_type": family,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": 50,
        "max_position_embeddings": 64,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "tie_word_embeddings": family == "qwen2",
        "hidden_act": "silu",
    }
    if family == "qwen3":
        cfg["head_dim"] = 16
    if fope:
        rope = {"rope_type": "default", "fope_init_factor": 0.5, "fope_sep_head": sep_head, "num_inv_freq": k}
        cfg.update(
            rope_scaling=dict(rope),
            rope_parameters={**rope, "rope_theta": 10000.0},
            model_type=f"{family}_fope",
            architectures=[f"Fope{stem}ForCausalLM"],
            fope_base_model_type=family,
            fope_layout=layout,
            auto_map={
                "AutoConfig": f"configuration_fope.Fope{stem}Config",
                "AutoModel": f"modeling_fope.Fope{stem}Model",
                "AutoModelForCausalLM": f"modeling_fope.Fope{stem}ForCausalLM",
            },
        )
    cfg.update(extra)
    return cfg


def random_model(cfg: Dict[str, Any], seed: int = 0) -> CausalLM:
    spec = parse_model_config(cfg)
    torch.manual_seed(seed)
    model = CausalLM(spec)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn_like(p) * (0.5 if "embed" in name else 0.1) + (1.0 if "norm" in name else 0.0))
        for name, b in model.named_buffers():
            b.copy_(torch.randn_like(b) * 0.3 + (torch.eye(b.shape[-1]) if b.dim() >= 2 else 0))
    return model.eval()


def write_folder(folder: str, cfg: Dict[str, Any], model: CausalLM, with_code: bool = True) -> None:
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w", encoding="utf-8") as fh:
        json.dump(cfg, fh, indent=2)
    state = {k: v for k, v in model.state_dict().items()}
    write_safetensors(os.path.join(folder, "model.safetensors"), state, {"format": "pt"})
    if with_code:
        for f in REMOTE_CODE_FILES:
            shutil.copyfile(os.path.join(PACKAGE_DIR, f), os.path.join(folder, f))
