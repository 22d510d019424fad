"""transformers model classes of fopeify's FoPE folders: `Fope<Base>Model` (AutoModel) and
`Fope<Base>ForCausalLM` (AutoModelForCausalLM) for Llama, Mistral, Qwen2 and Qwen3.

The math is fope_core.py's (the plain PyTorch decoder fopeify's runtime is checked against); this file
only adapts it to transformers:
  - attention through `ALL_ATTENTION_FUNCTIONS[config._attn_implementation]` (eager: fope_core's), with
    `**kwargs` passed down and `_supports_attention_backend = True`, so sdpa, flash-attention, vLLM's
    Transformers backend (`--model-impl transformers`) and sequence-parallel patches work;
  - transformers' masks and KV cache (generation), called with whichever argument names the installed
    version uses (4.57 and 5.x differ);
  - the FoPE coefficients are persistent float32 buffers; a local folder's coefficient shapes are checked
    against the config before loading, and missing or mis-shaped coefficients after loading are errors.
"""
from __future__ import annotations

import inspect
import os
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import torch
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers import __version__ as TRANSFORMERS_VERSION
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast

from .configuration_fope import FopeLlamaConfig, FopeMistralConfig, FopeQwen2Config, FopeQwen3Config
from .fope_checkpoint import canonical_name, check_coefficients
from .fope_core import RMSNorm, RotaryEmbedding, causal_mask, decoder_forward, eager_attention, init_decoder_modules
from .fope_safetensors import SafetensorsFolder
from .fope_spec import FopeCheckpointError, FopeConfigError, ModelSpec, parse_model_config

try:
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
except ImportError:  # transformers < 4.48
    ALL_ATTENTION_FUNCTIONS = {}

try:
    from transformers.cache_utils import DynamicCache
except ImportError:
    DynamicCache = None

try:
    from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask
except ImportError:  # transformers < 4.53: fope_core's own boolean mask
    create_causal_mask = None
    create_sliding_window_causal_mask = None

TRANSFORMERS_MAJOR = int(TRANSFORMERS_VERSION.split(".")[0])
COEFFICIENT_SUFFIXES = (".sin_coef", ".cos_coef")


def model_spec(config: Any) -> ModelSpec:
    """The fope_spec ModelSpec of a transformers config (the one parser fopeify's loaders share)."""
    return parse_model_config(config.to_dict(), "config")


def attention_function(config: Any) -> Callable[..., Any]:
    impl = getattr(config, "_attn_implementation", None) or "eager"
    if impl == "eager":
        return eager_attention
    try:
        return ALL_ATTENTION_FUNCTIONS[impl]
    except KeyError as err:
        raise ValueError(f"attention implementation {impl!r} is not registered in ALL_ATTENTION_FUNCTIONS") from err


def _call_supported(fn: Callable[..., Any], **kwargs: Any) -> Any:
    """Call `fn` with the keyword arguments its signature accepts (`input_embeds` became `inputs_embeds`,
    `cache_position` went away in transformers 5)."""
    params = inspect.signature(fn).parameters
    if "inputs_embeds" not in params and "input_embeds" in params:
        kwargs["input_embeds"] = kwargs.pop("inputs_embeds")
    if any(p.kind == inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return fn(**kwargs)
    return fn(**{k: v for k, v in kwargs.items() if k in params})


def build_attention_mask(
    config: Any,
    spec: ModelSpec,
    inputs_embeds: torch.Tensor,
    attention_mask: Optional[torch.Tensor],
    cache_position: torch.Tensor,
    past_key_values: Any,
    position_ids: torch.Tensor,
) -> Optional[torch.Tensor]:
    fn = create_causal_mask if spec.sliding_window is None else create_sliding_window_causal_mask
    if fn is None:
        past = int(cache_position[0].item()) if cache_position.numel() else 0
        t = inputs_embeds.shape[1]
        mask = causal_mask(past, t, past + t, spec.sliding_window, inputs_embeds.device)
        if attention_mask is not None and attention_mask.dim() == 2:
            mask = mask & attention_mask[:, None, None, : past + t].bool()
        return mask
    return _call_supported(
        fn,
        config=config,
        inputs_embeds=inputs_embeds,
        attention_mask=attention_mask,
        cache_position=cache_position,
        past_key_values=past_key_values,
        position_ids=position_ids,
    )


def new_cache(config: Any) -> Any:
    if DynamicCache is None:
        from .fope_core import KVCache

        return KVCache()
    try:
        return DynamicCache(config=config)
    except TypeError:  # transformers < 4.56
        return DynamicCache()


def _local_folder(path: Any, kwargs: Dict[str, Any]) -> Optional[str]:
    if not isinstance(path, (str, os.PathLike)):
        return None
    folder = os.path.join(str(path), kwargs.get("subfolder") or "")
    return folder if os.path.isfile(os.path.join(folder, "config.json")) else None


def precheck_folder(folder: str, spec: ModelSpec) -> None:
    """The checks of fopeify's own loaders on a local folder's coefficients, before transformers loads it."""
    st = SafetensorsFolder(folder)
    by_canonical: Dict[str, str] = {}
    for name in st.names():
        by_canonical.setdefault(canonical_name(name), name)
    layout, _ = check_coefficients(spec, folder, by_canonical, st)
    if spec.fope is not None and spec.fope.layout is not None and layout != spec.fope.layout:
        raise FopeCheckpointError(f"config.json says fope_layout {spec.fope.layout}, but the checkpoint holds {layout} coefficients")


def check_loading_info(info: Dict[str, Any]) -> None:
    """Missing or mis-shaped FoPE coefficients are errors (transformers would only warn and re-initialise)."""
    missing = [k for k in info.get("missing_keys", []) if str(k).endswith(COEFFICIENT_SUFFIXES)]
    if missing:
        raise FopeCheckpointError(f"the checkpoint lacks FoPE coefficient(s) {', '.join(sorted(missing))}; they are never regenerated")
    mismatched = [m for m in info.get("mismatched_keys", []) if str(m[0] if isinstance(m, (list, tuple)) else m).endswith(COEFFICIENT_SUFFIXES)]
    if mismatched:
        raise FopeCheckpointError(f"FoPE coefficient shapes disagree with config.json (num_inv_freq, fope_sep_head, KV heads): {mismatched}")


class FopePreTrainedModel(PreTrainedModel):
    base_model_prefix = "model"
    supports_gradient_checkpointing = False
    _no_split_modules = ["DecoderLayer"]
    _skip_keys_device_placement = ["past_key_values"]
    _supports_flash_attn = True
    _supports_flash_attn_2 = True
    _supports_sdpa = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _supports_cache_class = True
    _keep_in_fp32_modules = ["rotary_emb"]
    _keep_in_fp32_modules_strict = ["rotary_emb"]

    def _init_weights(self, module: nn.Module) -> None:
        # FoPE coefficients are not initialised here: they come from the checkpoint (checked at load).
        std = getattr(self.config, "initializer_range", 0.02)
        with torch.no_grad():
            if isinstance(module, nn.Linear):
                module.weight.normal_(mean=0.0, std=std)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.Embedding):
                module.weight.normal_(mean=0.0, std=std)
            elif isinstance(module, RMSNorm):
                module.weight.fill_(1.0)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Any, *args: Any, **kwargs: Any) -> Any:
        want_info = kwargs.pop("output_loading_info", False)
        folder = _local_folder(pretrained_model_name_or_path, kwargs)
        config = kwargs.get("config")
        if folder is not None:
            if config is None or isinstance(config, (str, os.PathLike)):
                from .fope_checkpoint import read_config

                spec = parse_model_config(read_config(folder), os.path.join(folder, "config.json"))
            else:
                spec = model_spec(config)
            precheck_folder(folder, spec)
        model, info = super().from_pretrained(pretrained_model_name_or_path, *args, output_loading_info=True, **kwargs)
        check_loading_info(info)
        for module in model.modules():
            if isinstance(module, RotaryEmbedding) and module.has_coefficients:
                module.sin_coef.data = module.sin_coef.data.float()
                module.cos_coef.data = module.cos_coef.data.float()
        return (model, info) if want_info else model


class FopeModel(FopePreTrainedModel):
    """The decoder (HF's `model.` part): embeddings, layers, final norm, shared rotary embedding."""

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.spec = model_spec(config)
        if self.spec.fope is None:
            raise FopeConfigError("a Fope model needs FoPE settings (fope_init_factor / fope_sep_head / num_inv_freq) in rope_scaling / rope_parameters")
        self.padding_idx = getattr(config, "pad_token_id", None)
        init_decoder_modules(self, self.spec)
        for layer in self.layers:
            layer.self_attn.config = config
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.embed_tokens

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.embed_tokens = value

    def forward(
        self,
        input_ids: Optional[torch.LongTensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        position_ids: Optional[torch.LongTensor] = None,
        past_key_values: Any = None,
        inputs_embeds: Optional[torch.FloatTensor] = None,
        use_cache: Optional[bool] = None,
        **kwargs: Any,
    ) -> BaseModelOutputWithPast:
        # transformers 4.x passes cache_position; 5.x removed it (and warns about forwards that name it).
        cache_position: Optional[torch.Tensor] = kwargs.pop("cache_position", None)
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("specify exactly one of input_ids or inputs_embeds")
        for unused in ("output_attentions", "output_hidden_states", "return_dict"):
            kwargs.pop(unused, None)
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        if use_cache is None:
            use_cache = bool(getattr(self.config, "use_cache", False))
        if use_cache and past_key_values is None:
            past_key_values = new_cache(self.config)
        past = past_key_values.get_seq_length() if past_key_values is not None else 0
        t = inputs_embeds.shape[1]
        if cache_position is None:
            cache_position = torch.arange(past, past + t, device=inputs_embeds.device)
        if position_ids is None:
            position_ids = cache_position.unsqueeze(0)
        mask = build_attention_mask(self.config, self.spec, inputs_embeds, attention_mask, cache_position, past_key_values, position_ids)
        hidden = decoder_forward(
            self,
            inputs_embeds,
            position_ids,
            mask,
            attention_function(self.config),
            past_key_values,
            {"cache_position": cache_position},
            **kwargs,
        )
        return BaseModelOutputWithPast(last_hidden_state=hidden, past_key_values=past_key_values if use_cache else None)


class FopeForCausalLM(FopePreTrainedModel, GenerationMixin):
    model_class: type = FopeModel
    _tied_weights_keys: Union[List[str], Dict[str, str]] = (
        {"lm_head.weight": "model.embed_tokens.weight"} if TRANSFORMERS_MAJOR >= 5 else ["lm_head.weight"]
    )

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.model = self.model_class(config)
        self.vocab_size = config.vocab_size
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.model.embed_tokens

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.model.embed_tokens = value

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Module) -> None:
        self.lm_head = value

    def get_decoder(self) -> nn.Module:
        return self.model

    def forward(
        self,
        input_ids: Optional[torch.LongTensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        position_ids: Optional[torch.LongTensor] = None,
        past_key_values: Any = None,
        inputs_embeds: Optional[torch.FloatTensor] = None,
        labels: Optional[torch.LongTensor] = None,
        use_cache: Optional[bool] = None,
        logits_to_keep: Union[int, torch.Tensor] = 0,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast:
        out = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            **kwargs,
        )
        hidden = out.last_hidden_state
        keep = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
        logits = self.lm_head(hidden[:, keep, :])
        loss = None
        if labels is not None:
            loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.config.vocab_size, **kwargs)
        return CausalLMOutputWithPast(loss=loss, logits=logits, past_key_values=out.past_key_values)


class FopeLlamaModel(FopeModel):
    config_class = FopeLlamaConfig


class FopeLlamaForCausalLM(FopeForCausalLM):
    config_class = FopeLlamaConfig
    model_class = FopeLlamaModel


class FopeMistralModel(FopeModel):
    config_class = FopeMistralConfig


class FopeMistralForCausalLM(FopeForCausalLM):
    config_class = FopeMistralConfig
    model_class = FopeMistralModel


class FopeQwen2Model(FopeModel):
    config_class = FopeQwen2Config


class FopeQwen2ForCausalLM(FopeForCausalLM):
    config_class = FopeQwen2Config
    model_class = FopeQwen2Model


class FopeQwen3Model(FopeModel):
    config_class = FopeQwen3Config


class FopeQwen3ForCausalLM(FopeForCausalLM):
    config_class = FopeQwen3Config
    model_class = FopeQwen3Model


__all__ = [
    "FopeLlamaModel",
    "FopeLlamaForCausalLM",
    "FopeMistralModel",
    "FopeMistralForCausalLM",
    "FopeQwen2Model",
    "FopeQwen2ForCausalLM",
    "FopeQwen3Model",
    "FopeQwen3ForCausalLM",
]
