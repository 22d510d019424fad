"""A model folder -> the plain PyTorch `CausalLM` of fope_core, with every check fopeify's own loader makes
(src/model/weights.ts): FoPE coefficients present when the config enables FoPE (never regenerated), their
shapes what the config implies (K = num_inv_freq, KV heads, head_dim), every weight present and shaped."""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional, Tuple

import torch

from .fope_core import CausalLM, cast_parameters
from .fope_safetensors import SafetensorsFolder
from .fope_spec import FopeCheckpointError, FopeConfigError, ModelSpec, check_coefficient_shape, parse_model_config

LANGUAGE_MODEL_PREFIX = "model.language_model."
SHARED_PREFIX = "model.rotary_emb"


def layer_prefix(layer: int) -> str:
    return f"model.layers.{layer}.self_attn.rotary_emb"


def canonical_name(name: str) -> str:
    """`model.language_model.x` (VLM releases such as Intern-S1-Pro) -> `model.x`."""
    return "model." + name[len(LANGUAGE_MODEL_PREFIX):] if name.startswith(LANGUAGE_MODEL_PREFIX) else name


def read_config(folder: str) -> Dict[str, Any]:
    path = os.path.join(folder, "config.json")
    try:
        with open(path, "r", encoding="utf-8") as fh:
            raw = json.load(fh)
    except FileNotFoundError as err:
        raise FopeConfigError(f"{folder} has no config.json") from err
    except ValueError as err:
        raise FopeConfigError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(raw, dict):
        raise FopeConfigError(f"{path} is not a JSON object")
    return raw


def detect_layout(names: List[str], num_layers: int) -> Optional[str]:
    """`per-layer`, `shared` or None, from (canonical) tensor names; a partial per-layer set is an error."""
    present = set(names)
    per_layer = [f"{layer_prefix(i)}.sin_coef" in present for i in range(num_layers)]
    if any(per_layer):
        missing = [str(i) for i, ok in enumerate(per_layer) if not ok]
        if missing:
            raise FopeCheckpointError(f"per-layer FoPE coefficients are missing for layer(s) {', '.join(missing)}")
        return "per-layer"
    return "shared" if f"{SHARED_PREFIX}.sin_coef" in present else None


def coefficient_names(layout: str, num_layers: int) -> List[Tuple[str, str]]:
    prefixes = [SHARED_PREFIX] if layout == "shared" else [layer_prefix(i) for i in range(num_layers)]
    return [(f"{p}.sin_coef", f"{p}.cos_coef") for p in prefixes]


def check_coefficients(spec: ModelSpec, folder: str, by_canonical: Dict[str, str], st: SafetensorsFolder) -> Tuple[Optional[str], Optional[int]]:
    """(layout, K) of the checkpoint's coefficients after checking them against the config."""
    layout = detect_layout(list(by_canonical), spec.num_layers)
    if spec.fope is not None and layout is None:
        raise FopeCheckpointError(
            f"config.json of {folder} enables FoPE, but the checkpoint has no FoPE coefficients "
            f"({SHARED_PREFIX}.{{sin,cos}}_coef or per-layer {layer_prefix(0)}.*); a loader never regenerates them"
        )
    if layout is None:
        return None, None
    if spec.fope is None:
        raise FopeConfigError(f"{folder} holds FoPE coefficients, but config.json has no FoPE settings (fope_init_factor / fope_sep_head / num_inv_freq)")
    k: Optional[int] = None
    for sin_name, cos_name in coefficient_names(layout, spec.num_layers):
        shapes = []
        for name in (sin_name, cos_name):
            if name not in by_canonical:
                raise FopeCheckpointError(f"FoPE coefficient {name} is missing")
            shape = st.shape(by_canonical[name])
            check_coefficient_shape(spec, name, shape)
            shapes.append(shape)
        if shapes[0] != shapes[1]:
            raise FopeCheckpointError(f"FoPE coefficients {sin_name} {shapes[0]} and {cos_name} {shapes[1]} differ in shape")
        if k is not None and shapes[0][-2] != k:
            raise FopeCheckpointError(f"FoPE coefficient {sin_name} keeps {shapes[0][-2]} frequencies, other layers {k}")
        k = shapes[0][-2]
    return layout, k


def load_causal_lm(folder: str, dtype: torch.dtype = torch.float32, device: str = "cpu") -> CausalLM:
    """Load a model folder into a plain `CausalLM` (float32 by default, as fopeify's runtime computes)."""
    raw = read_config(folder)
    spec = parse_model_config(raw, os.path.join(folder, "config.json"))
    st = SafetensorsFolder(folder)
    by_canonical: Dict[str, str] = {}
    for name in st.names():
        c = canonical_name(name)
        if c not in by_canonical or name == c:
            by_canonical[c] = name
    layout, k = check_coefficients(spec, folder, by_canonical, st)
    # A tied checkpoint may still carry lm_head.weight; fopeify uses it when present.
    separate_head = not spec.tie_word_embeddings or "lm_head.weight" in by_canonical
    model = CausalLM(spec, layout, k, separate_head=separate_head)
    expected = model.state_dict()
    missing = [n for n in expected if n not in by_canonical]
    if missing:
        more = f" and {len(missing) - 4} more" if len(missing) > 4 else ""
        raise FopeCheckpointError(f"checkpoint in {folder} lacks {', '.join(missing[:4])}{more} (config.json describes a {spec.architecture})")
    state: Dict[str, torch.Tensor] = {}
    for name, want in expected.items():
        shape = st.shape(by_canonical[name])
        if list(want.shape) != shape:
            raise FopeCheckpointError(f"{name} has shape [{', '.join(map(str, shape))}], config.json implies [{', '.join(map(str, want.shape))}]")
        state[name] = st.read(by_canonical[name], torch.float32)
    model.load_state_dict(state, strict=True)
    cast_parameters(model, dtype)
    return model.to(device).eval()
