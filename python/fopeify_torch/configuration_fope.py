"""transformers configuration classes of fopeify's FoPE folders (`model_type` `<base>_fope`).

Each subclasses the built-in config of its base family, so every key of the base model keeps its meaning.
The FoPE keys in `rope_scaling` (transformers 4.x) / `rope_parameters` (5.x) are not rope-validation
errors (`ignore_keys_at_rope_validation`) and survive the base class's own handling of those dicts: they
are taken out before the base `__init__` validates and standardises the dict, and put back after.
"""
from __future__ import annotations

from typing import Any, Dict

from transformers import LlamaConfig, MistralConfig, Qwen2Config, Qwen3Config

from .fope_spec import FOPE_KEYS

_ROPE_DICTS = ("rope_scaling", "rope_parameters")


def _take_fope_keys(kwargs: Dict[str, Any]) -> Dict[str, Any]:
    """Remove the FoPE keys from the rope dicts in `kwargs` (copies); return them."""
    found: Dict[str, Any] = {}
    for attr in _ROPE_DICTS:
        d = kwargs.get(attr)
        if isinstance(d, dict) and any(k in d for k in FOPE_KEYS):
            found.update({k: v for k, v in d.items() if k in FOPE_KEYS})
            kwargs[attr] = {k: v for k, v in d.items() if k not in FOPE_KEYS}
    return found


def _restore_fope_keys(config: Any, fope: Dict[str, Any]) -> None:
    if not fope:
        return
    for attr in _ROPE_DICTS:
        d = getattr(config, attr, None)
        if isinstance(d, dict):
            d.update(fope)


class _FopeConfigMixin:
    base_family: str = ""
    ignore_keys_at_rope_validation = set(FOPE_KEYS)

    def __init__(self, **kwargs: Any) -> None:
        fope = _take_fope_keys(kwargs)
        kwargs.setdefault("fope_base_model_type", self.base_family)
        super().__init__(**kwargs)  # type: ignore[call-arg]
        _restore_fope_keys(self, fope)


class FopeLlamaConfig(_FopeConfigMixin, LlamaConfig):
    model_type = "llama_fope"
    base_family = "llama"


class FopeMistralConfig(_FopeConfigMixin, MistralConfig):
    model_type = "mistral_fope"
    base_family = "mistral"


class FopeQwen2Config(_FopeConfigMixin, Qwen2Config):
    model_type = "qwen2_fope"
    base_family = "qwen2"


class FopeQwen3Config(_FopeConfigMixin, Qwen3Config):
    model_type = "qwen3_fope"
    base_family = "qwen3"


__all__ = ["FopeLlamaConfig", "FopeMistralConfig", "FopeQwen2Config", "FopeQwen3Config"]
