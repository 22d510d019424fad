"""config.json -> one typed ModelSpec, exactly as fopeify's TypeScript runtime reads it (src/config/model-spec.ts).

Plain Python (no torch, no transformers): the transformers remote code, the plain PyTorch loader and the
trainer all read the config through this one function, so they never disagree about the model.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

FAMILIES: Tuple[str, ...] = ("llama", "mistral", "qwen2", "qwen3")
ROPE_TYPES: Tuple[str, ...] = ("default", "linear", "dynamic", "yarn", "llama3", "longrope")
FOPE_KEYS: Tuple[str, ...] = ("fope_init_factor", "fope_sep_head", "num_inv_freq", "fope_num_inv_freq", "fope_sin_pad")
"""The FoPE keys fopeify writes into rope_scaling / rope_parameters (transformers must not validate them away)."""
FOPE_LAYOUTS: Tuple[str, ...] = ("shared", "per-layer")

_STOCK_ARCHITECTURES: Dict[str, str] = {
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "mistral",
    "Qwen2ForCausalLM": "qwen2",
    "Qwen3ForCausalLM": "qwen3",
}


class FopeError(ValueError):
    """A user-facing error about a model folder: one line, with a code fopeify maps to its own error codes."""

    code: str = "BAD_CONFIG"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class FopeConfigError(FopeError):
    code = "BAD_CONFIG"


class FopeUnsupportedError(FopeError):
    code = "UNSUPPORTED_ARCHITECTURE"


class FopeCheckpointError(FopeError):
    code = "BAD_SAFETENSORS"


def fope_model_type(family: str) -> str:
    """`llama` -> `llama_fope`: the model_type of fopeify's remote-code FoPE folders."""
    return f"{family}_fope"


def fope_architecture(family: str) -> str:
    """`qwen2` -> `FopeQwen2ForCausalLM`."""
    return f"Fope{_class_stem(family)}ForCausalLM"


def _class_stem(family: str) -> str:
    return {"llama": "Llama", "mistral": "Mistral", "qwen2": "Qwen2", "qwen3": "Qwen3"}[family]


@dataclass(frozen=True)
class RopeSpec:
    type: str
    theta: float
    dim: int
    """Rotated dimensions per head: head_dim x partial_rotary_factor."""
    max_position_embeddings: int
    params: Dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FopeSpec:
    init_factor: Optional[float]
    sep_head: bool
    num_inv_freq: Optional[int]
    """K written in the config (None: clip against max_position_embeddings)."""
    sin_pad: int
    layout: Optional[str]
    """`shared` / `per-layer` as the config records it (None: older folders; the tensors decide)."""


@dataclass(frozen=True)
class ModelSpec:
    family: str
    model_type: str
    architecture: str
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    rms_norm_eps: float
    tie_word_embeddings: bool
    qkv_bias: bool
    o_bias: bool
    mlp_bias: bool
    qk_norm: bool
    sliding_window: Optional[int]
    rope: RopeSpec
    fope: Optional[FopeSpec]

    @property
    def kv_groups(self) -> int:
        """Query heads per KV head (query head h uses KV head h // kv_groups)."""
        return self.num_heads // self.num_kv_heads


def _num(raw: Mapping[str, Any], key: str) -> Optional[float]:
    v = raw.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return v


def rope_parameter_dict(raw: Mapping[str, Any]) -> Dict[str, Any]:
    """transformers v5 `rope_parameters` first (over v4 `rope_scaling`), as fopeify reads it."""
    v5 = raw.get("rope_parameters")
    v4 = raw.get("rope_scaling")
    if isinstance(v5, dict):
        return {**(v4 if isinstance(v4, dict) else {}), **v5}
    return dict(v4) if isinstance(v4, dict) else {}


def family_of(raw: Mapping[str, Any]) -> str:
    """The Llama-family base of a config: stock names, `<base>_fope` names, and `fope_base_model_type`."""
    archs = [str(a) for a in raw.get("architectures") or []] if isinstance(raw.get("architectures"), list) else []
    model_type = raw.get("model_type") if isinstance(raw.get("model_type"), str) else ""
    recorded = raw.get("fope_base_model_type")
    if recorded is not None:
        if recorded not in FAMILIES:
            raise FopeUnsupportedError(
                f"unknown FoPE base family {recorded!r} (fope_base_model_type); supported: {', '.join(FAMILIES)}"
            )
        if model_type.endswith("_fope") and model_type != fope_model_type(recorded):
            raise FopeConfigError(f"model_type {model_type} disagrees with fope_base_model_type {recorded}")
        return str(recorded)
    if model_type.endswith("_fope"):
        base = model_type[: -len("_fope")]
        if base not in FAMILIES:
            raise FopeUnsupportedError(f"unknown FoPE base family {base!r} (model_type {model_type}); supported: {', '.join(FAMILIES)}")
        return base
    for a in archs:
        if a in _STOCK_ARCHITECTURES:
            return _STOCK_ARCHITECTURES[a]
        for fam in FAMILIES:
            if a == fope_architecture(fam):
                return fam
    if not archs and model_type in FAMILIES:
        return model_type
    name = (archs[0] if archs else "") or model_type or "unknown"
    raise FopeUnsupportedError(f"unsupported architecture {name}: not a Llama-family RoPE decoder; supported families: {', '.join(FAMILIES)}")


def parse_rope_spec(raw: Mapping[str, Any], head_dim: int) -> RopeSpec:
    rp = rope_parameter_dict(raw)
    type_raw = rp.get("rope_type", rp.get("type", "default")) or "default"
    rope_type = "longrope" if type_raw == "su" else str(type_raw)
    if rope_type not in ROPE_TYPES:
        raise FopeUnsupportedError(f'unsupported rope type "{type_raw}" (supported: {", ".join(ROPE_TYPES)})')
    theta = rp["rope_theta"] if _num(rp, "rope_theta") is not None else (_num(raw, "rope_theta") or 10000.0)
    prf = rp["partial_rotary_factor"] if _num(rp, "partial_rotary_factor") is not None else (_num(raw, "partial_rotary_factor") or 1.0)
    dim = int(math.floor(head_dim * prf))
    max_pos = _num(raw, "max_position_embeddings")
    max_pos_i = int(max_pos) if max_pos is not None else 2048
    params: Dict[str, Any] = {}
    for k, v in rp.items():
        if k in ("rope_type", "type", "rope_theta", "partial_rotary_factor") or k.startswith("fope_") or k == "num_inv_freq":
            continue
        params[k] = v
    if params.get("original_max_position_embeddings") is None and _num(raw, "original_max_position_embeddings") is not None:
        params["original_max_position_embeddings"] = raw["original_max_position_embeddings"]
    need = {
        "linear": ["factor"],
        "dynamic": ["factor"],
        "yarn": ["factor"],
        "llama3": ["factor", "original_max_position_embeddings", "low_freq_factor", "high_freq_factor"],
        "longrope": ["short_factor", "long_factor"],
    }.get(rope_type, [])
    missing = [k for k in need if params.get(k) is None]
    if missing:
        raise FopeConfigError(f"rope type {rope_type} needs {', '.join(missing)} in rope_scaling / rope_parameters")
    if dim <= 0 or dim % 2 != 0:
        raise FopeConfigError(f"rotary dimension {dim} must be a positive even number")
    return RopeSpec(type=rope_type, theta=float(theta), dim=dim, max_position_embeddings=max_pos_i, params=params)


def parse_fope_spec(raw: Mapping[str, Any]) -> Optional[FopeSpec]:
    rp = rope_parameter_dict(raw)

    def pick(k: str) -> Any:
        return rp[k] if k in rp else raw.get(k)

    init_factor = pick("fope_init_factor")
    sep_head = pick("fope_sep_head")
    nif = pick("num_inv_freq")
    if nif is None:
        nif = pick("fope_num_inv_freq")
    if init_factor is None and sep_head is None and nif is None:
        return None
    sin_pad = pick("fope_sin_pad")
    layout = raw.get("fope_layout")
    if layout is not None and layout not in FOPE_LAYOUTS:
        raise FopeConfigError(f"fope_layout must be one of {', '.join(FOPE_LAYOUTS)} (got {layout!r})")
    if nif is not None and (isinstance(nif, bool) or not isinstance(nif, (int, float)) or nif != int(nif) or nif < 1):
        raise FopeConfigError(f"num_inv_freq must be a positive integer (got {nif!r})")
    return FopeSpec(
        init_factor=float(init_factor) if isinstance(init_factor, (int, float)) and not isinstance(init_factor, bool) else None,
        sep_head=bool(sep_head) if sep_head is not None else False,
        num_inv_freq=int(nif) if nif is not None else None,
        sin_pad=0 if sin_pad == 0 or sin_pad is False else 1,
        layout=layout,
    )


def parse_model_config(raw: Mapping[str, Any], source: str = "config.json") -> ModelSpec:
    """Parse a config.json dict; raises FopeError subclasses for unsupported or incomplete configs."""
    if not isinstance(raw, Mapping):
        raise FopeConfigError(f"{source} is not a JSON object")
    family = family_of(raw)
    required = ["hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size"]
    missing = [k for k in required if _num(raw, k) is None]
    if missing:
        raise FopeConfigError(f"{source} is missing {', '.join(missing)}")
    hidden = int(raw["hidden_size"])
    heads = int(raw["num_attention_heads"])
    kv_heads = int(_num(raw, "num_key_value_heads") or heads)
    head_dim_raw = _num(raw, "head_dim")
    head_dim_f = head_dim_raw if head_dim_raw is not None else hidden / heads
    if head_dim_f != int(head_dim_f):
        raise FopeConfigError(f"{source}: hidden_size {hidden} is not divisible by {heads} heads")
    if heads % kv_heads != 0:
        raise FopeConfigError(f"{source}: {heads} attention heads are not a multiple of {kv_heads} KV heads")
    head_dim = int(head_dim_f)
    attention_bias = raw.get("attention_bias") is True
    archs = raw.get("architectures") if isinstance(raw.get("architectures"), list) else []
    window = None if raw.get("use_sliding_window") is False else _num(raw, "sliding_window")
    eps = _num(raw, "rms_norm_eps")
    return ModelSpec(
        family=family,
        model_type=str(raw.get("model_type") or family),
        architecture=str(archs[0]) if archs else family,
        hidden_size=hidden,
        intermediate_size=int(raw["intermediate_size"]),
        num_layers=int(raw["num_hidden_layers"]),
        num_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        vocab_size=int(raw["vocab_size"]),
        rms_norm_eps=float(eps) if eps is not None else 1e-6,
        tie_word_embeddings=raw.get("tie_word_embeddings") is True,
        qkv_bias=True if family == "qwen2" else attention_bias,
        o_bias=False if family == "qwen2" else attention_bias,
        mlp_bias=raw.get("mlp_bias") is True,
        qk_norm=family == "qwen3",
        sliding_window=int(window) if window is not None else None,
        rope=parse_rope_spec(raw, head_dim),
        fope=parse_fope_spec(raw),
    )


def coefficient_k(spec: ModelSpec) -> int:
    """K, the frequencies FoPE keeps: `num_inv_freq` when recorded, else clipped against max_position_embeddings."""
    from .fope_rope import fope_kept_count, rope_frequencies  # local: fope_rope imports this module

    if spec.fope is None:
        raise FopeConfigError("the config has no FoPE settings")
    half = spec.rope.dim // 2
    if spec.fope.num_inv_freq is not None:
        if spec.fope.num_inv_freq > half:
            raise FopeConfigError(
                f"num_inv_freq {spec.fope.num_inv_freq} exceeds the {half} frequencies of the rotary dimension {spec.rope.dim} (head_dim {spec.head_dim})"
            )
        return spec.fope.num_inv_freq
    inv, _ = rope_frequencies(spec.rope, spec.rope.max_position_embeddings)
    return fope_kept_count(inv, spec.rope.max_position_embeddings, None)


def coefficient_shape(spec: ModelSpec, k: Optional[int] = None) -> List[int]:
    """The coefficient shape the config implies: `[n_kv, K, K]` with fope_sep_head, else `[K, K]`.

    `k` overrides the clipped K of a config without num_inv_freq (the checkpoint's shape is authoritative
    then: float32 rounding can move the clipping boundary by one, fope.md section 2)."""
    if k is None:
        k = coefficient_k(spec)
    assert spec.fope is not None
    return [spec.num_kv_heads, k, k] if spec.fope.sep_head else [k, k]


def check_coefficient_shape(spec: ModelSpec, name: str, shape: Union[List[int], Tuple[int, ...]]) -> None:
    """A checkpoint's coefficient shape must be exactly what the config says (K, heads, head_dim)."""
    shape = list(shape)
    half = spec.rope.dim // 2

    def bad(why: str) -> FopeCheckpointError:
        return FopeCheckpointError(f"FoPE coefficient {name} has shape [{', '.join(map(str, shape))}]: {why}")

    if len(shape) not in (2, 3):
        raise bad("expected [K, K] or [heads, K, K]")
    k, out = shape[-2], shape[-1]
    if not (1 <= k <= half and 1 <= out <= half):
        raise bad(f"K and the output size must be 1..{half} (rotary dim {spec.rope.dim}, head_dim {spec.head_dim})")
    assert spec.fope is not None
    if spec.fope.num_inv_freq is not None and k != spec.fope.num_inv_freq:
        raise bad(f"K = {k}, but config.json says num_inv_freq = {spec.fope.num_inv_freq}")
    expected = coefficient_shape(spec, k if spec.fope.num_inv_freq is None else None)
    if shape != expected:
        raise bad(
            f"config.json implies [{', '.join(map(str, expected))}] (fope_sep_head {str(spec.fope.sep_head).lower()}, {spec.num_kv_heads} KV heads)"
        )
