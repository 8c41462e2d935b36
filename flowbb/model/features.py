"""Fixed feature maps used by the embedders: sinusoidal encodings, RBF distograms, chain positions."""

from __future__ import annotations

import math

import torch

Tensor = torch.Tensor


def sinusoidal_embedding(x: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Transformer-style sinusoidal encoding of real or integer values.

    Args:
        x: values ``[...]`` (positions, offsets, scaled times).
        dim: output channels (even).
        max_period: longest period; frequencies are ``max_period^(-2k/dim)``, k < dim/2.
    Returns:
        ``[..., dim]``: ``[sin(x f_k), cos(x f_k)]``, in ``x``'s dtype (float32 for integer ``x``).
    """
    if dim % 2 != 0 or dim < 2:
        raise ValueError(f"sinusoidal_embedding: dim must be even and >= 2, got {dim}")
    dtype = x.dtype if x.is_floating_point() else torch.float32
    k = torch.arange(dim // 2, device=x.device, dtype=dtype)
    freqs = torch.exp(-math.log(max_period) * 2.0 * k / dim)
    ang = x.to(dtype)[..., None] * freqs
    return torch.cat([torch.sin(ang), torch.cos(ang)], dim=-1)


def rbf_distogram(d: Tensor, num_bins: int, max_dist: float, min_dist: float = 0.0) -> Tensor:
    """Soft (Gaussian RBF) distogram; the last bin saturates to 1 beyond ``max_dist``.

    Args:
        d: distances ``[...]``.
        num_bins: bins (>= 2), centres evenly spaced on ``[min_dist, max_dist]``, width = spacing.
    Returns:
        ``[..., num_bins]`` in ``d``'s dtype, smooth in ``d``.
    """
    if num_bins < 2:
        raise ValueError(f"rbf_distogram: num_bins must be >= 2, got {num_bins}")
    centres = torch.linspace(min_dist, max_dist, num_bins, device=d.device, dtype=d.dtype)
    sigma = (max_dist - min_dist) / (num_bins - 1)
    x = (d[..., None] - centres) / sigma
    x = torch.cat([x[..., :-1], x[..., -1:].clamp_max(0.0)], dim=-1)
    return torch.exp(-x * x)


def chain_positions(residue_index: Tensor, mask: Tensor) -> Tensor:
    """Residue positions counted from the first valid residue of each sample.

    Args:
        residue_index: ``[B, L]`` long (residue numbering, gaps at chain breaks).
        mask: ``[B, L]``.
    Returns:
        ``[B, L]`` long, ``residue_index - min over valid residues``; 0 at padded positions.
    """
    valid = mask.bool()
    big = torch.iinfo(residue_index.dtype).max
    start = residue_index.masked_fill(~valid, big).min(dim=-1, keepdim=True).values
    start = torch.where(valid.any(-1, keepdim=True), start, torch.zeros_like(start))
    return (residue_index - start).masked_fill(~valid, 0)
