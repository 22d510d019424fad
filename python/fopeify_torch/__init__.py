"""fopeify's PyTorch core: RoPE/FoPE rotary math, the Llama-family decoder, a safetensors reader and a
loader for fopeify's model folders. Importable without transformers.

The `fope_*.py` files and the transformers remote code (`configuration_fope.py`, `modeling_fope.py`) are
copied verbatim into every FoPE model folder fopeify writes; this package is their one source.
"""
from .fope_checkpoint import load_causal_lm, read_config
from .fope_core import (
    Attention,
    CausalLM,
    DecoderLayer,
    DecoderModel,
    KVCache,
    MLP,
    RMSNorm,
    RotaryEmbedding,
    cast_parameters,
    causal_mask,
    decoder_forward,
    eager_attention,
    init_decoder_modules,
    repeat_kv,
)
from .fope_rope import apply_grouped_rotary, apply_rotary, default_inv_freq, fope_cos_sin, fope_kept_count, rope_cos_sin, rope_frequencies
from .fope_safetensors import SafetensorsFolder, read_header
from .fope_spec import (
    FAMILIES,
    FOPE_KEYS,
    FopeCheckpointError,
    FopeConfigError,
    FopeError,
    FopeUnsupportedError,
    ModelSpec,
    check_coefficient_shape,
    coefficient_shape,
    parse_model_config,
)
from .fope_runner import REMOTE_CODE_FILES

__all__ = [name for name in dir() if not name.startswith("_")]
