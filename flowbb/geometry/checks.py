"""Backbone geometry checks on CA traces: radius of gyration, CA-CA bond lengths, clashes.

The primitives of :func:`flowbb.geometry.report.trace_report` (the one report with key names, used by validation,
evaluation and the scripts); any trace atom works (CA, C4').

All functions take ``ca [..., L, 3]`` (Å) and a residue mask ``[..., L]`` (bool or 0/1) and are
batched over leading dims. Quantities that are undefined for a row (no valid residue / pair) are NaN.
"""

from __future__ import annotations

import torch

Tensor = torch.Tensor

IDEAL_CA_CA = 3.8


#: compact folded protein chains: Rg = 2.2 L^0.38 Å (L residues)
FOLDED_RG_PREFACTOR = 2.2
FOLDED_RG_EXPONENT = 0.38


def folded_rg(
    length: float | Tensor, prefactor: float = FOLDED_RG_PREFACTOR, exponent: float = FOLDED_RG_EXPONENT
) -> float | Tensor:
    """Radius of gyration (Å) of a compact folded chain of ``length`` residues, ``prefactor L^exponent`` (default:
    proteins, ``2.2 L^0.38``; RNA: :data:`flowbb.geometry.report.RNA_TRACE`): the reference of every ``rg_ratio``
    (:func:`flowbb.geometry.report.trace_report`).

    Args:
        length: a number, or ``[...]`` lengths (a tensor; lengths below 1 count as 1).
    Returns:
        a float, or ``[...]``.
    """
    if isinstance(length, Tensor):
        return prefactor * length.clamp_min(1.0) ** exponent
    return prefactor * max(float(length), 1.0) ** exponent


def _check(ca: Tensor, mask: Tensor, name: str) -> None:
    if ca.shape[-1] != 3 or mask.shape != ca.shape[:-1]:
        raise ValueError(
            f"{name}: expected ca [..., L, 3] and mask [..., L], got {tuple(ca.shape)} and {tuple(mask.shape)}"
        )


def radius_of_gyration(ca: Tensor, mask: Tensor) -> Tensor:
    """``sqrt(mean_i |x_i - centroid|^2)`` over valid residues.

    Args:
        ca: ``[..., L, 3]``.
        mask: ``[..., L]``.
    Returns:
        ``[...]``.
    """
    _check(ca, mask, "radius_of_gyration")
    w = mask.to(ca.dtype)
    n = w.sum(-1)
    centroid = (w[..., None] * ca).sum(-2) / n.clamp_min(1.0)[..., None]
    sq = ((ca - centroid[..., None, :]) ** 2).sum(-1)
    return torch.sqrt((w * sq).sum(-1) / n)


def ca_ca_distances(ca: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Distances between consecutive CA atoms (by position along the L axis).

    Args:
        ca: ``[..., L, 3]``.
        mask: ``[..., L]``.
    Returns:
        dist ``[..., L-1]`` (0 where invalid), valid ``[..., L-1]`` bool (both residues valid).
    """
    _check(ca, mask, "ca_ca_distances")
    m = mask.bool()
    valid = m[..., 1:] & m[..., :-1]
    dist = torch.linalg.vector_norm(ca[..., 1:, :] - ca[..., :-1, :], dim=-1)
    return torch.where(valid, dist, torch.zeros_like(dist)), valid


def ca_ca_deviation(ca: Tensor, mask: Tensor, ideal: float = IDEAL_CA_CA) -> Tensor:
    """Mean ``|d - 3.8|`` (Å) over consecutive valid CA pairs.

    Args:
        ca: ``[..., L, 3]``.
        mask: ``[..., L]``.
    Returns:
        ``[...]``.
    """
    dist, valid = ca_ca_distances(ca, mask)
    v = valid.to(ca.dtype)
    return (v * (dist - ideal).abs()).sum(-1) / v.sum(-1)


def count_clashes(
    ca: Tensor, mask: Tensor, threshold: float = 3.0, min_seq_sep: int = 3, chunk_size: int = 512
) -> Tensor:
    """Number of CA-CA pairs ``i < j`` with ``j - i >= min_seq_sep``, both valid, closer than ``threshold``.

    Computed over query chunks, so memory is ``O(L * chunk_size)`` per batch row.

    Args:
        ca: ``[..., L, 3]``.
        mask: ``[..., L]``.
        threshold: distance in Å (strictly below counts).
        min_seq_sep: minimum separation along the L axis.
        chunk_size: query rows per chunk.
    Returns:
        ``[...]`` long.
    """
    _check(ca, mask, "count_clashes")
    if chunk_size < 1:
        raise ValueError(f"count_clashes: chunk_size must be >= 1, got {chunk_size}")
    if min_seq_sep < 1:
        raise ValueError(f"count_clashes: min_seq_sep must be >= 1, got {min_seq_sep}")
    m = mask.bool()
    length = ca.shape[-2]
    pos = torch.arange(length, device=ca.device)
    total = torch.zeros(ca.shape[:-2], dtype=torch.long, device=ca.device)
    thr2 = threshold * threshold
    for start in range(0, length, chunk_size):
        stop = min(start + chunk_size, length)
        q = ca[..., start:stop, :]  # [..., c, 3]
        d2 = ((q[..., :, None, :] - ca[..., None, :, :]) ** 2).sum(-1)  # [..., c, L]
        sep_ok = (pos[None, :] - pos[start:stop, None]) >= min_seq_sep  # [c, L], j - i >= sep > 0
        pair_ok = m[..., start:stop, None] & m[..., None, :] & sep_ok
        total += ((d2 < thr2) & pair_ok).sum((-1, -2))
    return total
