"""What sam2flow changes in how SAM2 computes, for speed, without changing what it computes beyond rounding.

- `cache_position_embedding`: Hiera re-interpolates (bicubic) and re-tiles its position embedding for every frame,
  though it only depends on the input size. Cached per size: the same tensor, about 0.1 s a frame less on a CPU at
  1024 px.
- `Bf16CpuAttention`: on a CPU with ``avx512_bf16`` but no AMX, torch's fused attention kernel runs bfloat16 no
  faster than float32, while a bfloat16 matrix product runs about twice as fast. SAM2's large attentions (memory
  attention over 7 frames of 64×64 tokens, Hiera's global blocks) then run as query blocks of two bfloat16 products
  and a float32-accumulated softmax, sized so each block's scores stay in the last-level cache. Same maths as the
  fused kernel; values differ from it by bfloat16 rounding only.
- `project_values_late`: memory attention's cross-attention projects 64-channel memories to 256-channel values and
  then averages them with the attention weights. Averaging the 64-channel memories first and projecting the average
  is the same linear map (the weights of each query sum to one, so the bias passes through), with a quarter of the
  work in the largest product. Used with `Bf16CpuAttention`, whose blocked path takes the narrower values; torch's
  fused CPU kernel does not (it falls back to a slower one).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

LARGE = 1 << 22
"""Attentions with fewer query × key pairs than this keep torch's fused kernel (Hiera's windows, the decoders)."""
BLOCK_SCORES = 1 << 24
"""Scores computed per query block (32 MiB of bfloat16 at most: the cache of a recent server CPU)."""


def cache_position_embedding(predictor: Any) -> None:
    """Make the image encoder's trunk compute its position embedding once per input size (see the module doc)."""
    trunk = getattr(getattr(predictor, "image_encoder", None), "trunk", None)
    compute = getattr(trunk, "_get_pos_embed", None)
    if trunk is None or compute is None:
        return
    cache: dict[tuple[int, int], torch.Tensor] = {}

    def cached(hw: tuple[int, int]) -> torch.Tensor:
        key = (int(hw[0]), int(hw[1]))
        if key not in cache:
            with torch.inference_mode():
                cache[key] = compute(hw)
        return cache[key]

    trunk._get_pos_embed = cached


def project_values_late(predictor: Any) -> int:
    """Move the value projection of memory attention's single-head cross-attentions after the attention (see the
    module doc); returns how many were changed."""
    from sam2.modeling.sam.transformer import Attention

    changed = 0
    for module in predictor.memory_attention.modules():
        if isinstance(module, Attention) and module.num_heads == 1 and module.kv_in_dim < module.internal_dim:
            module.out_proj = nn.Sequential(module.v_proj, module.out_proj)
            module.v_proj = nn.Identity()
            changed += 1
    return changed


def blocked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None) -> torch.Tensor:
    """``softmax(q kᵀ · scale) v`` over blocks of queries, in ``q``'s dtype (see the module doc)."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    batch = max(1, q.numel() // (q.shape[-1] * q.shape[-2]))
    block = max(16, BLOCK_SCORES // (k.shape[-2] * batch))
    out = torch.empty((*q.shape[:-1], v.shape[-1]), dtype=q.dtype, device=q.device)
    keys, v = k.to(q.dtype).transpose(-1, -2), v.to(q.dtype)  # late-projected values come unprojected: float32
    for i in range(0, q.shape[-2], block):
        scores = torch.matmul(q[..., i : i + block, :] * scale, keys)
        torch.matmul(torch.softmax(scores, dim=-1), v, out=out[..., i : i + block, :])
    return out


class Bf16CpuAttention(TorchFunctionMode):
    """While active, large bfloat16 attentions on the CPU run as `blocked_attention` (see the module doc)."""

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention and len(args) == 3:
            q, k, v = args
            if _blockable(q, k, v, **kwargs):
                return blocked_attention(q, k, v, kwargs.get("scale"))
            args = (q, k.to(q.dtype), v.to(q.dtype))  # late-projected values come unprojected: float32
        return func(*args, **kwargs)


def _blockable(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    attn_mask: Any = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    **_: Any,
) -> bool:
    return (
        q.dtype == torch.bfloat16
        and q.device.type == "cpu"
        and attn_mask is None
        and not is_causal
        and not dropout_p
        and q.shape[-2] * k.shape[-2] >= LARGE
    )
