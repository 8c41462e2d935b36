"""Fused softmax-attention backends with key-padding masks only (never a dense bias).

``attention(q, k, v, key_mask)`` computes ``softmax(q k^T * scale + mask) v`` per batch and head with

* ``flash_attn.flash_attn_varlen_func`` (unpadded through ``cu_seqlens``) when the ``flash_attn`` package
  imports, the tensors are on CUDA in float16/bfloat16 and the (8-aligned) head width is <= 256;
* otherwise ``torch.nn.functional.scaled_dot_product_attention`` under an explicit choice of fused kernels
  (:data:`FUSED_SDPA`: CPU flash; CUDA flash / memory-efficient / cuDNN, head widths padded to a multiple of 8):
  inputs that none of them takes raise instead of silently running the quadratic math kernel, which only
  ``backend="math"`` reaches. Its linear-memory fused kernels need
  equal q/k/v head widths (CPU's flash kernel falls back to the quadratic math path otherwise), so a
  narrower q/k or v is zero-padded to the common width: zero channels in q and k leave every logit
  unchanged, zero channels in v are sliced off. The key-padding mask is passed as a broadcast boolean
  ``[B, 1, 1, L]`` mask, which the fused kernels accept without materialising L x L; with no padding
  ``attn_mask=None``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

Tensor = torch.Tensor

try:  # optional CUDA backend
    from flash_attn import flash_attn_varlen_func as _flash_attn_varlen_func  # type: ignore

    HAS_FLASH_ATTN = True
except (ImportError, OSError, RuntimeError):  # pragma: no cover - depends on the installation
    _flash_attn_varlen_func = None
    HAS_FLASH_ATTN = False

FLASH_ATTN_MAX_HEAD_DIM = 256
BACKENDS = ("auto", "sdpa", "flash_attn", "math")
# SDPA kernels that never build the L x L matrix: the only ones ``auto``/``sdpa`` may run. PyTorch's math kernel
# (quadratic memory) is reached only with backend="math", never as a silent fallback.
FUSED_SDPA = {"cpu": [SDPBackend.FLASH_ATTENTION],
              "cuda": [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION]}


def _round_up(x: int, m: int) -> int:
    return (x + m - 1) // m * m


def flash_attn_usable(q: Tensor, dqk: int, dv: int) -> bool:
    """Whether the flash-attn varlen backend can run tensors like ``q`` with these head widths."""
    return (
        HAS_FLASH_ATTN
        and q.is_cuda
        and q.dtype in (torch.float16, torch.bfloat16)
        and _round_up(max(dqk, dv), 8) <= FLASH_ATTN_MAX_HEAD_DIM
    )


def common_width(q: Tensor, dqk: int, dv: int, backend: str = "auto") -> int:
    """Head width that q, k and v should be built at (zero-padded) for the backend that will run them: a multiple
    of 8 on CUDA (flash-attn, and the 16-bit memory-efficient SDPA kernel, need it), the widest of the two else."""
    if q.is_cuda or backend == "flash_attn" or (backend == "auto" and flash_attn_usable(q, dqk, dv)):
        return _round_up(max(dqk, dv), 8)
    return max(dqk, dv)


def _pad_last(x: Tensor, width: int) -> Tensor:
    return x if x.shape[-1] == width else F.pad(x, (0, width - x.shape[-1]))


def attention(
    q: Tensor, k: Tensor, v: Tensor, key_mask: Tensor | None = None, scale: float = 1.0, backend: str = "auto"
) -> Tensor:
    """Softmax attention with an optional key-padding mask.

    Args:
        q: ``[B, H, L, Dqk]``; k: ``[B, H, L, Dqk]``; v: ``[B, H, L, Dv]``.
        key_mask: ``[B, L]`` bool, True for valid keys, or None (all valid). A row with no valid key
            attends over all keys (finite output; callers zero padded rows).
        scale: logit scale (1.0 when it is folded into q/k as in FlashIPA).
        backend: ``"auto"`` (flash-attn when usable, else SDPA), ``"sdpa"`` or ``"flash_attn"``.
    Returns:
        ``[B, H, L, Dv]``. With flash-attn, rows of padded queries are zero.
    """
    if backend not in BACKENDS:
        raise ValueError(f"attention: unknown backend {backend!r} ({'|'.join(BACKENDS)})")
    B, _H, L, dqk = q.shape
    if k.shape != q.shape or v.shape[:3] != q.shape[:3]:
        raise ValueError(
            f"attention: shapes q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)} disagree"
        )
    dv = v.shape[-1]
    if key_mask is not None:
        if key_mask.shape != (B, L):
            raise ValueError(f"attention: key_mask must be [B, L] = {(B, L)}, got {tuple(key_mask.shape)}")
        key_mask = key_mask.bool()
        key_mask = key_mask | ~key_mask.any(dim=-1, keepdim=True)
    use_flash = backend == "flash_attn" or (backend == "auto" and flash_attn_usable(q, dqk, dv))
    if use_flash:
        if not flash_attn_usable(q, dqk, dv):
            raise RuntimeError(
                "attention: backend 'flash_attn' requested but not usable here "
                f"(installed={HAS_FLASH_ATTN}, device={q.device}, dtype={q.dtype}, "
                f"head widths {dqk}/{dv} > {FLASH_ATTN_MAX_HEAD_DIM}?)"
            )
        return _flash_attn_varlen(q, k, v, key_mask, scale)
    width = _round_up(max(dqk, dv), 8) if q.is_cuda else max(dqk, dv)
    q, k, v = _pad_last(q, width), _pad_last(k, width), _pad_last(v, width)
    attn_mask = None
    if key_mask is not None and not bool(key_mask.all()):
        attn_mask = key_mask[:, None, None, :]
    if backend == "math":
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=scale)
    else:
        fused = FUSED_SDPA.get(q.device.type)
        if fused is None:  # other devices (mps, xpu): PyTorch's own choice
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=scale)
        else:
            try:
                with sdpa_kernel(fused):
                    out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=scale)
            except RuntimeError as err:
                if "no available kernel" not in str(err).lower():
                    raise
                raise RuntimeError(
                    f"attention: no fused (linear-memory) SDPA kernel takes these inputs on {q.device.type} "
                    f"(dtype {q.dtype}, head width {width}, {'with' if attn_mask is not None else 'no'} key mask): "
                    f"{str(err).splitlines()[0]}. PyTorch's math kernel would build L x L per head; "
                    "model.attention_backend=math allows it"
                ) from err
    return out[..., :dv] if width != dv else out


def _flash_attn_varlen(q: Tensor, k: Tensor, v: Tensor, key_mask: Tensor | None, scale: float) -> Tensor:
    """flash-attn varlen call over the valid tokens of each sample. Shapes as in :func:`attention`."""
    B, H, L, dqk = q.shape
    dv = v.shape[-1]
    width = _round_up(max(dqk, dv), 8)
    if key_mask is None:
        key_mask = torch.ones(B, L, dtype=torch.bool, device=q.device)
    lens = key_mask.sum(-1, dtype=torch.int32)
    cu = F.pad(torch.cumsum(lens, 0, dtype=torch.int32), (1, 0))
    max_len = int(lens.max())

    def unpad(x: Tensor) -> Tensor:  # [B, H, L, D] -> [total, H, width]
        return _pad_last(x.transpose(1, 2), width)[key_mask]

    out_u = _flash_attn_varlen_func(
        unpad(q),
        unpad(k),
        unpad(v),
        cu,
        cu,
        max_len,
        max_len,
        dropout_p=0.0,
        softmax_scale=scale,
        causal=False,
    )
    out = torch.zeros(B, L, H, width, dtype=out_u.dtype, device=out_u.device)
    out = out.index_put((key_mask,), out_u)  # differentiable scatter back to padded layout
    return out.transpose(1, 2)[..., :dv]
