"""The Llama-family decoder (Llama, Mistral, Qwen2, Qwen3) with RoPE or FoPE, as plain PyTorch modules.

Module and parameter names are Hugging Face's (`model.layers.0.self_attn.q_proj.weight`,
`model.rotary_emb.sin_coef`, ...), so a state dict loads into this code, into the transformers remote
code that wraps it (modeling_fope.py) and back into fopeify unchanged. What it computes is fopeify's
runtime (src/model/llama.ts):
  - q/k norm (Qwen3) before the rotary embedding; the KV cache stores rotated keys;
  - FoPE where RoPE sits: per-KV-head tables with repeat-kv grouping, shared or per-layer coefficients,
    sin padded with `fope_sin_pad`, the rope variant's attention factor (YaRN) on cos and sin;
  - q/k/v bias (Qwen2, attention_bias), sliding window (HF semantics: i - window < j <= i), tied heads.

Attention goes through a function with transformers' attention-interface signature
`fn(module, q, k, v, attention_mask, scaling=..., dropout=..., sliding_window=..., **kwargs)` so the
transformers wrapper can pass any `ALL_ATTENTION_FUNCTIONS` entry; `eager_attention` is this module's own.
No transformers import here: the trainer uses these classes directly.
"""
from __future__ import annotations

from typing import Any, Callable, List, Optional, Protocol, Tuple

import torch
from torch import nn

from .fope_rope import apply_grouped_rotary, fope_cos_sin, rope_cos_sin, rope_frequencies, rope_seq_len
from .fope_spec import FopeCheckpointError, FopeConfigError, ModelSpec, coefficient_shape

AttentionFn = Callable[..., Tuple[torch.Tensor, Optional[torch.Tensor]]]
CosSin = Tuple[torch.Tensor, torch.Tensor]


class KVCacheLike(Protocol):
    """What attention needs of a KV cache (transformers' Cache objects have the same method)."""

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, cache_kwargs: Optional[dict] = None) -> Tuple[torch.Tensor, torch.Tensor]: ...


class KVCache:
    """A minimal growing KV cache: per layer, keys and values `[B, nKv, T, D]` (keys already rotated)."""

    def __init__(self) -> None:
        self.keys: List[torch.Tensor] = []
        self.values: List[torch.Tensor] = []

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, cache_kwargs: Optional[dict] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        if layer_idx == len(self.keys):
            self.keys.append(key_states)
            self.values.append(value_states)
        else:
            self.keys[layer_idx] = torch.cat((self.keys[layer_idx], key_states), dim=-2)
            self.values[layer_idx] = torch.cat((self.values[layer_idx], value_states), dim=-2)
        return self.keys[layer_idx], self.values[layer_idx]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.keys[layer_idx].shape[-2] if len(self.keys) > layer_idx else 0


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """`[B, nKv, T, D]` -> `[B, nKv * n_rep, T, D]`, KV head g serving query heads g*n_rep .. g*n_rep+n_rep-1."""
    if n_rep == 1:
        return x
    b, n_kv, t, d = x.shape
    return x[:, :, None].expand(b, n_kv, n_rep, t, d).reshape(b, n_kv * n_rep, t, d)


def causal_mask(q_start: int, q_len: int, k_len: int, sliding_window: Optional[int], device: torch.device) -> torch.Tensor:
    """Boolean mask `[1, 1, q_len, k_len]` (True = may attend): key j visible to query i when
    `i - window < j <= i` (query i sits at sequence index q_start + i)."""
    qi = torch.arange(q_start, q_start + q_len, device=device)[:, None]
    kj = torch.arange(k_len, device=device)[None, :]
    keep = kj <= qi
    if sliding_window is not None:
        keep = keep & (kj > qi - sliding_window)
    return keep[None, None]


def eager_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: Optional[torch.Tensor],
    scaling: float,
    dropout: float = 0.0,
    **kwargs: Any,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Softmax attention with transformers' interface: q `[B, nH, Tq, D]`, k/v `[B, nKv, Tk, D]`, a boolean
    (True = keep) or additive mask; returns `([B, Tq, nH, D], weights)`."""
    n_rep = query.shape[1] // key.shape[1]
    key, value = repeat_kv(key, n_rep), repeat_kv(value, n_rep)
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        mask = attention_mask[..., : key.shape[-2]]
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + mask
    probs = torch.softmax(scores.to(torch.float32), dim=-1).to(query.dtype)
    probs = nn.functional.dropout(probs, p=dropout, training=module.training)
    out = torch.matmul(probs, value).transpose(1, 2).contiguous()
    return out, probs


class RMSNorm(nn.Module):
    """`x * rsqrt(mean(x^2) + eps) * w` in float32 (LlamaRMSNorm)."""

    def __init__(self, size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.variance_epsilon = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        h = x.to(torch.float32)
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
        return self.weight * h.to(dtype)


class MLP(nn.Module):
    """SwiGLU: `down(silu(gate(x)) * up(x))`."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(spec.hidden_size, spec.intermediate_size, bias=spec.mlp_bias)
        self.up_proj = nn.Linear(spec.hidden_size, spec.intermediate_size, bias=spec.mlp_bias)
        self.down_proj = nn.Linear(spec.intermediate_size, spec.hidden_size, bias=spec.mlp_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(nn.functional.silu(self.gate_proj(x)) * self.up_proj(x))


class RotaryEmbedding(nn.Module):
    """cos/sin tables `[B, G, T, dim]` for position ids `[B, T]`: RoPE (G = 1, no tensors) or FoPE from the
    frozen float32 coefficient buffers `sin_coef` / `cos_coef` (persistent: they are part of the checkpoint,
    never regenerated; buffers, so optimizers, weight decay and LoRA leave them alone).

    Frequencies are computed per call (dynamic NTK and longrope depend on the call's length), never stored:
    a model built on the meta device (transformers 5) has nothing to re-initialise.
    """

    def __init__(self, spec: ModelSpec, with_coefficients: bool, k: Optional[int] = None) -> None:
        super().__init__()
        self.spec = spec
        self.has_coefficients = with_coefficients
        if with_coefficients:
            shape = coefficient_shape(spec, k)
            self.register_buffer("sin_coef", torch.zeros(shape, dtype=torch.float32), persistent=True)
            self.register_buffer("cos_coef", torch.zeros(shape, dtype=torch.float32), persistent=True)

    def forward(self, position_ids: torch.Tensor) -> CosSin:
        if position_ids.dim() == 1:  # flattened tokens (vLLM's Transformers backend): one row
            position_ids = position_ids[None]
        inv_freq, attention_factor = rope_frequencies(self.spec.rope, rope_seq_len(position_ids))
        if not self.has_coefficients:
            return rope_cos_sin(position_ids, inv_freq, attention_factor)
        assert self.spec.fope is not None
        return fope_cos_sin(position_ids, inv_freq, self.sin_coef, self.cos_coef, self.spec.fope.sin_pad, attention_factor)


class Attention(nn.Module):
    """Grouped-query self-attention with the rotary embedding applied after q/k norm and before the cache."""

    def __init__(self, spec: ModelSpec, layer_idx: int, per_layer_rotary: bool = False, k: Optional[int] = None) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.head_dim = spec.head_dim
        self.num_heads = spec.num_heads
        self.num_key_value_heads = spec.num_kv_heads
        self.num_key_value_groups = spec.kv_groups
        self.scaling = spec.head_dim ** -0.5
        self.sliding_window = spec.sliding_window
        self.attention_dropout = 0.0
        self.is_causal = True
        self.config: Any = None  # transformers' attention functions read module.config; the wrapper sets it
        hd = spec.head_dim
        self.q_proj = nn.Linear(spec.hidden_size, spec.num_heads * hd, bias=spec.qkv_bias)
        self.k_proj = nn.Linear(spec.hidden_size, spec.num_kv_heads * hd, bias=spec.qkv_bias)
        self.v_proj = nn.Linear(spec.hidden_size, spec.num_kv_heads * hd, bias=spec.qkv_bias)
        self.o_proj = nn.Linear(spec.num_heads * hd, spec.hidden_size, bias=spec.o_bias)
        if spec.qk_norm:
            self.q_norm = RMSNorm(hd, spec.rms_norm_eps)
            self.k_norm = RMSNorm(hd, spec.rms_norm_eps)
        if per_layer_rotary:
            self.rotary_emb = RotaryEmbedding(spec, with_coefficients=True, k=k)

    def forward(
        self,
        hidden_states: torch.Tensor,
        position_embeddings: Optional[CosSin],
        attention_mask: Optional[torch.Tensor],
        attention_fn: AttentionFn,
        position_ids: Optional[torch.Tensor] = None,
        past_key_values: Optional[KVCacheLike] = None,
        cache_kwargs: Optional[dict] = None,
        **kwargs: Any,
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        b, t, _ = hidden_states.shape
        hd = self.head_dim
        q = self.q_proj(hidden_states).view(b, t, -1, hd).transpose(1, 2)
        k = self.k_proj(hidden_states).view(b, t, -1, hd).transpose(1, 2)
        v = self.v_proj(hidden_states).view(b, t, -1, hd).transpose(1, 2)
        if hasattr(self, "q_norm"):
            q, k = self.q_norm(q), self.k_norm(k)
        if hasattr(self, "rotary_emb"):
            if position_ids is None:
                raise FopeConfigError("per-layer FoPE needs position ids")
            position_embeddings = self.rotary_emb(position_ids)
        if position_embeddings is None:
            raise FopeConfigError("attention was called without rotary tables")
        cos, sin = position_embeddings
        q, k = apply_grouped_rotary(q, k, cos, sin)
        if past_key_values is not None:
            k, v = past_key_values.update(k, v, self.layer_idx, cache_kwargs)
        out, weights = attention_fn(
            self,
            q,
            k,
            v,
            attention_mask,
            dropout=self.attention_dropout if self.training else 0.0,
            scaling=self.scaling,
            sliding_window=self.sliding_window,
            **kwargs,
        )
        return self.o_proj(out.reshape(b, t, -1).contiguous()), weights


class DecoderLayer(nn.Module):
    def __init__(self, spec: ModelSpec, layer_idx: int, per_layer_rotary: bool = False, k: Optional[int] = None) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(spec.hidden_size, spec.rms_norm_eps)
        self.self_attn = Attention(spec, layer_idx, per_layer_rotary, k)
        self.post_attention_layernorm = RMSNorm(spec.hidden_size, spec.rms_norm_eps)
        self.mlp = MLP(spec)

    def forward(self, hidden_states: torch.Tensor, **attention_kwargs: Any) -> torch.Tensor:
        h, _ = self.self_attn(self.input_layernorm(hidden_states), **attention_kwargs)
        hidden_states = hidden_states + h
        return hidden_states + self.mlp(self.post_attention_layernorm(hidden_states))


def fope_layout(spec: ModelSpec, layout: Optional[str] = None) -> Optional[str]:
    """`shared`, `per-layer` or None (RoPE): the argument, else what the config records, else shared."""
    if spec.fope is None:
        if layout is not None:
            raise FopeConfigError("FoPE coefficients were found, but config.json has no FoPE settings")
        return None
    if layout is not None and spec.fope.layout is not None and layout != spec.fope.layout:
        raise FopeCheckpointError(f"config.json says fope_layout {spec.fope.layout}, but the checkpoint holds {layout} coefficients")
    return layout or spec.fope.layout or "shared"


def init_decoder_modules(owner: nn.Module, spec: ModelSpec, layout: Optional[str] = None, k: Optional[int] = None) -> None:
    """Give `owner` the submodules of HF's `model.` part: embed_tokens, layers, norm, rotary_emb.

    A function (not a base class) so the plain `DecoderModel` and the transformers `PreTrainedModel`
    wrapper build exactly the same modules under exactly the same names.
    """
    resolved = fope_layout(spec, layout)
    owner.embed_tokens = nn.Embedding(spec.vocab_size, spec.hidden_size)
    owner.layers = nn.ModuleList(DecoderLayer(spec, i, resolved == "per-layer", k) for i in range(spec.num_layers))
    owner.norm = RMSNorm(spec.hidden_size, spec.rms_norm_eps)
    owner.rotary_emb = RotaryEmbedding(spec, with_coefficients=resolved == "shared", k=k)


def decoder_forward(
    owner: nn.Module,
    inputs_embeds: torch.Tensor,
    position_ids: torch.Tensor,
    attention_mask: Optional[torch.Tensor],
    attention_fn: AttentionFn,
    past_key_values: Optional[KVCacheLike] = None,
    cache_kwargs: Optional[dict] = None,
    **kwargs: Any,
) -> torch.Tensor:
    """Run the layers of a module built by `init_decoder_modules`; returns the final-normed hidden states."""
    shared = owner.rotary_emb(position_ids)
    h = inputs_embeds
    for layer in owner.layers:
        h = layer(
            h,
            position_embeddings=shared,
            attention_mask=attention_mask,
            attention_fn=attention_fn,
            position_ids=position_ids,
            past_key_values=past_key_values,
            cache_kwargs=cache_kwargs,
            **kwargs,
        )
    return owner.norm(h)


class DecoderModel(nn.Module):
    """HF's `model.` part as a plain module: `forward(input_ids, cache=None) -> hidden states`."""

    def __init__(self, spec: ModelSpec, layout: Optional[str] = None, k: Optional[int] = None) -> None:
        super().__init__()
        self.spec = spec
        init_decoder_modules(self, spec, layout, k)

    def forward(self, input_ids: torch.Tensor, past_key_values: Optional[KVCache] = None, attention_fn: AttentionFn = eager_attention) -> torch.Tensor:
        b, t = input_ids.shape
        start = past_key_values.get_seq_length() if past_key_values is not None else 0
        positions = torch.arange(start, start + t, device=input_ids.device, dtype=torch.float32)[None].expand(b, t)
        mask = causal_mask(start, t, start + t, self.spec.sliding_window, input_ids.device)
        return decoder_forward(self, self.embed_tokens(input_ids), positions, mask, attention_fn, past_key_values)


class CausalLM(nn.Module):
    """Decoder + LM head (the embedding matrix when tied): `forward(input_ids, cache=None) -> logits [B, T, V]`."""

    def __init__(self, spec: ModelSpec, layout: Optional[str] = None, k: Optional[int] = None, separate_head: Optional[bool] = None) -> None:
        super().__init__()
        self.spec = spec
        self.model = DecoderModel(spec, layout, k)
        if separate_head if separate_head is not None else not spec.tie_word_embeddings:
            self.lm_head = nn.Linear(spec.hidden_size, spec.vocab_size, bias=False)

    def output_weight(self) -> torch.Tensor:
        head = getattr(self, "lm_head", None)
        return head.weight if head is not None else self.model.embed_tokens.weight

    def forward(self, input_ids: torch.Tensor, past_key_values: Optional[KVCache] = None, attention_fn: AttentionFn = eager_attention) -> torch.Tensor:
        h = self.model(input_ids, past_key_values, attention_fn)
        return nn.functional.linear(h, self.output_weight())

    @torch.no_grad()
    def generate_greedy(self, prompt: List[int], max_new_tokens: int, eos_token_id: Optional[int] = None) -> List[int]:
        """Greedy decoding with the KV cache (prefill once, then one token per step)."""
        device = self.output_weight().device
        cache = KVCache()
        ids = torch.tensor([prompt], dtype=torch.long, device=device)
        out: List[int] = []
        for _ in range(max_new_tokens):
            logits = self(ids, cache)[0, -1]
            nxt = int(torch.argmax(logits).item())
            out.append(nxt)
            if eos_token_id is not None and nxt == eos_token_id:
                break
            ids = torch.tensor([[nxt]], dtype=torch.long, device=device)
        return out


def cast_parameters(model: nn.Module, dtype: torch.dtype) -> None:
    """Cast the weights (parameters) to `dtype`; the FoPE coefficients (buffers) stay float32."""
    for p in model.parameters():
        if p.is_floating_point():
            p.data = p.data.to(dtype)
