"""RoPE frequencies per rope type, FoPE clipping and the cos/sin tables, exactly as fopeify's TypeScript
runtime computes them (src/rope/inv-freq.ts, src/rope/fope.ts, src/model/rotary.ts).

Frequencies are computed in Python floats (IEEE double) with a float32 rounding wherever the TypeScript
code rounds (`Math.fround`), so K, the clipping boundary and every table agree with fopeify bit for bit
up to the last float32 ulp. Tables are float32; the Fourier sums run in float64 as fopeify's do.
"""
from __future__ import annotations

import math
import struct
from typing import Any, List, Mapping, Optional, Sequence, Tuple

import torch

from .fope_spec import FopeConfigError, RopeSpec


def f32(x: float) -> float:
    """Round a double to float32 (JavaScript's Math.fround)."""
    if math.isinf(x) or math.isnan(x):
        return x
    try:
        return struct.unpack("f", struct.pack("f", x))[0]
    except OverflowError:
        return math.copysign(math.inf, x)


def default_inv_freq(base: float, dim: int) -> List[float]:
    """`1 / base^(2j/dim)` in float32 steps, as torch computes it from `arange(0, dim, 2).float() / dim`."""
    return [f32(1.0 / f32(math.pow(base, f32(f32(2 * j) / dim)))) for j in range(dim // 2)]


def _param(p: Mapping[str, Any], key: str) -> Optional[float]:
    v = p.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


def yarn_get_mscale(scale: float, mscale: float = 1.0) -> float:
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0


def yarn_correction_range(dim: int, base: float, original: float, beta_fast: float, beta_slow: float, truncate: bool = True) -> Tuple[float, float]:
    def corr(n: float) -> float:
        return (dim * math.log(original / (n * 2 * math.pi))) / (2 * math.log(base))

    low, high = corr(beta_fast), corr(beta_slow)
    if truncate:
        low, high = float(math.floor(low)), float(math.ceil(high))
    low = max(low, 0.0)
    high = min(high, float(dim - 1))
    if low == high:
        high += 0.001
    return low, high


def yarn_frequencies(spec: RopeSpec) -> Tuple[List[float], float]:
    p = spec.params
    original = _param(p, "original_max_position_embeddings") or float(spec.max_position_embeddings)
    factor = _param(p, "factor") or spec.max_position_embeddings / original
    beta_fast = _param(p, "beta_fast") or 32.0
    beta_slow = _param(p, "beta_slow") or 1.0
    truncate = p.get("truncate") if isinstance(p.get("truncate"), bool) else True
    low, high = yarn_correction_range(spec.dim, spec.theta, original, beta_fast, beta_slow, bool(truncate))
    inv: List[float] = []
    for j in range(spec.dim // 2):
        pos = f32(math.pow(spec.theta, f32(f32(2 * j) / spec.dim)))
        extrapolation = f32(1.0 / pos)
        interpolation = f32(1.0 / f32(factor * pos))
        ramp = min(max((j - low) / (high - low), 0.0), 1.0)
        extrap_factor = f32(1.0 - f32(ramp))
        inv.append(f32(f32(interpolation * f32(1.0 - extrap_factor)) + f32(extrapolation * extrap_factor)))
    attention = _param(p, "attention_factor")
    if attention is None:
        mscale, mscale_all = _param(p, "mscale"), _param(p, "mscale_all_dim")
        attention = (
            yarn_get_mscale(factor, mscale) / yarn_get_mscale(factor, mscale_all) if mscale and mscale_all else yarn_get_mscale(factor)
        )
    return inv, attention


def llama3_frequencies(spec: RopeSpec) -> Tuple[List[float], float]:
    p = spec.params
    factor = float(p["factor"])
    lff = float(p["low_freq_factor"])
    hff = float(p["high_freq_factor"])
    lo = float(p["original_max_position_embeddings"])
    low_wl, high_wl = lo / lff, lo / hff
    out: List[float] = []
    for v in default_inv_freq(spec.theta, spec.dim):
        wl = 2 * math.pi / v
        if wl > low_wl:
            out.append(f32(v / factor))
        elif wl < high_wl:
            out.append(v)
        else:
            s = (lo / wl - lff) / (hff - lff)
            out.append(f32(((1 - s) * v) / factor + s * v))
    return out, 1.0


def longrope_frequencies(spec: RopeSpec, seq_len: int) -> Tuple[List[float], float]:
    p = spec.params
    lo = _param(p, "original_max_position_embeddings") or float(spec.max_position_embeddings)
    factor = _param(p, "factor") or spec.max_position_embeddings / lo
    ext = p.get("long_factor") if seq_len > lo else p.get("short_factor")
    if not isinstance(ext, list) or len(ext) != spec.dim // 2:
        raise FopeConfigError(f"longrope factors must be lists of {spec.dim // 2} numbers")
    inv = [f32(v / float(e)) for v, e in zip(default_inv_freq(spec.theta, spec.dim), ext)]
    attention = _param(p, "attention_factor")
    if attention is None:
        attention = math.sqrt(1 + math.log(factor) / math.log(lo)) if factor > 1 else 1.0
    return inv, attention


def rope_frequencies(spec: RopeSpec, seq_len: Optional[int] = None) -> Tuple[List[float], float]:
    """(inv_freq, attention_factor) of a rope spec; `seq_len` matters only for dynamic and longrope."""
    seq = spec.max_position_embeddings if seq_len is None else seq_len
    if spec.type == "default":
        return default_inv_freq(spec.theta, spec.dim), 1.0
    if spec.type == "linear":
        factor = float(spec.params["factor"])
        return [f32(v / factor) for v in default_inv_freq(spec.theta, spec.dim)], 1.0
    if spec.type == "dynamic":
        factor = float(spec.params["factor"])
        length = spec.max_position_embeddings
        s = max(seq, length)
        base = spec.theta * math.pow((factor * s) / length - (factor - 1), spec.dim / (spec.dim - 2))
        return default_inv_freq(base, spec.dim), 1.0
    if spec.type == "yarn":
        return yarn_frequencies(spec)
    if spec.type == "llama3":
        return llama3_frequencies(spec)
    if spec.type == "longrope":
        return longrope_frequencies(spec, seq)
    raise FopeConfigError(f"unsupported rope type {spec.type}")


def fope_kept_count(inv_freq: Sequence[float], clip_length: float, num_inv_freq: Optional[int] = None) -> int:
    """How many frequencies FoPE keeps (a prefix): `num_inv_freq`, else those with inv_freq > 2*pi/L (float32)."""
    if num_inv_freq is not None:
        return max(0, min(num_inv_freq, len(inv_freq)))
    threshold = f32(2 * math.pi / clip_length)
    k = 0
    while k < len(inv_freq) and inv_freq[k] > threshold:
        k += 1
    return k


def rope_seq_len(positions: torch.Tensor) -> int:
    """The sequence length a rope variant depends on: `max(position) + 1` of the current call."""
    return int(math.floor(float(positions.max().item()))) + 1 if positions.numel() else 1


def _phases(positions: torch.Tensor, inv_freq: Sequence[float]) -> torch.Tensor:
    """`f32(t * inv_freq[j])` as float64 `[..., T, len(inv)]` (float32 product, as fopeify and torch compute it)."""
    inv = torch.tensor(list(inv_freq), dtype=torch.float32, device=positions.device)
    return (positions.to(torch.float32)[..., None] * inv).to(torch.float64)


def rope_cos_sin(positions: torch.Tensor, inv_freq: Sequence[float], attention_factor: float = 1.0) -> Tuple[torch.Tensor, torch.Tensor]:
    """Plain RoPE tables `[B, 1, T, dim]` (float32) for positions `[B, T]`."""
    phi = _phases(positions, inv_freq)
    c = (torch.cos(phi) * attention_factor).to(torch.float32)
    s = (torch.sin(phi) * attention_factor).to(torch.float32)
    return torch.cat((c, c), dim=-1)[:, None], torch.cat((s, s), dim=-1)[:, None]


def fope_cos_sin(
    positions: torch.Tensor,
    inv_freq: Sequence[float],
    sin_coef: torch.Tensor,
    cos_coef: torch.Tensor,
    sin_pad: int = 1,
    attention_factor: float = 1.0,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """FoPE tables `[B, G, T, dim]` (fope.md sections 3-4) for positions `[B, T]` and coefficients `[G, K, out]` or `[K, out]`.

    `C[g,t,d] = sum_j cos(t w_j) cos_coef[g,j,d]` (same for sin), padded to dim/2 with 1 (cos) and `sin_pad`
    (sin), concatenated twice and multiplied by the attention factor (YaRN's, padding included).
    """
    half = len(inv_freq)
    coef_c = cos_coef if cos_coef.dim() == 3 else cos_coef[None]
    coef_s = sin_coef if sin_coef.dim() == 3 else sin_coef[None]
    groups, k, out = coef_c.shape
    if k > half or out > half:
        raise FopeConfigError(f"FoPE coefficients [{k}, {out}] exceed {half} frequencies")
    phi = _phases(positions, inv_freq[:k])
    cphi = torch.cos(phi).to(torch.float32).to(torch.float64)
    sphi = torch.sin(phi).to(torch.float32).to(torch.float64)
    c = torch.einsum("btj,gjd->bgtd", cphi, coef_c.to(device=phi.device, dtype=torch.float64))
    s = torch.einsum("btj,gjd->bgtd", sphi, coef_s.to(device=phi.device, dtype=torch.float64))
    if out < half:
        pad_shape = (*c.shape[:-1], half - out)
        c = torch.cat((c, torch.ones(pad_shape, dtype=torch.float64, device=c.device)), dim=-1)
        s = torch.cat((s, torch.full(pad_shape, float(sin_pad), dtype=torch.float64, device=s.device)), dim=-1)
    c = (c.to(torch.float32).to(torch.float64) * attention_factor).to(torch.float32)
    s = (s.to(torch.float32).to(torch.float64) * attention_factor).to(torch.float32)
    return torch.cat((c, c), dim=-1), torch.cat((s, s), dim=-1)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """`x' = x cos + rotate_half(x) sin` on the first `cos.shape[-1]` entries of the last axis (partial rotary)."""
    dim = cos.shape[-1]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    if dim == x.shape[-1]:
        return x * cos + rotate_half(x) * sin
    rot, rest = x[..., :dim], x[..., dim:]
    return torch.cat((rot * cos + rotate_half(rot) * sin, rest), dim=-1)


def apply_grouped_rotary(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Rotate q `[B, nH, T, D]` and k `[B, nKv, T, D]` with tables `[B, G, T, dim]`, G = 1 or nKv.

    Query head h uses table `h // (nH / nKv)` (HF's repeat_kv order; fope.md section 5): q is viewed as
    `[B, nKv, R, T, D]` so the R query heads of a KV head share its table without a copy.
    """
    b, n_heads, t, d = q.shape
    n_kv = k.shape[1]
    groups = cos.shape[1]
    if groups not in (1, n_kv):
        raise FopeConfigError(f"rotary tables for {groups} heads cannot serve {n_kv} KV heads")
    qv = q.reshape(b, n_kv, n_heads // n_kv, t, d)
    q_rot = apply_rotary(qv, cos[:, :, None], sin[:, :, None]).reshape(b, n_heads, t, d)
    return q_rot, apply_rotary(k, cos, sin)
