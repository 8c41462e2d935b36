"""Kabsch superposition and true RMSD, batched and masked.

The optimal rotation is computed in float64 from the SVD of the 3x3 covariance, with the sign of the
smallest singular direction flipped when needed so that ``det R = +1`` (a proper rotation, never a
reflection). Results are returned in the input dtype.
"""

from __future__ import annotations

import torch

from flowbb.geometry import rigid

Tensor = torch.Tensor


def _weights(points: Tensor, mask: Tensor | None) -> Tensor:
    """``[..., N]`` float64 weights (1 for valid points)."""
    if mask is None:
        return torch.ones(points.shape[:-1], dtype=torch.float64, device=points.device)
    if mask.shape != points.shape[:-1]:
        raise ValueError(f"mask must have shape {tuple(points.shape[:-1])}, got {tuple(mask.shape)}")
    return mask.to(torch.float64)


def kabsch(mobile: Tensor, target: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Optimal proper rigid motion taking ``mobile`` onto ``target`` (least squares over valid points).

    Args:
        mobile: ``[..., N, 3]``.
        target: ``[..., N, 3]``.
        mask: optional ``[..., N]`` (bool or 0/1); masked points are ignored.
    Returns:
        rots ``[..., 3, 3]`` (det +1) and trans ``[..., 3]`` with
        ``rigid.apply(rots, trans, mobile) ~ target``. Rows with no valid point give the identity.
    """
    if mobile.shape != target.shape or mobile.shape[-1] != 3:
        raise ValueError(
            f"kabsch: mobile and target must both be [..., N, 3], got {tuple(mobile.shape)} and {tuple(target.shape)}"
        )
    w = _weights(mobile, mask)
    x = mobile.to(torch.float64)
    y = target.to(torch.float64)
    count = w.sum(-1, keepdim=True).clamp_min(1.0)[..., None]  # [..., 1, 1]
    x_mean = (w[..., None] * x).sum(-2, keepdim=True) / count
    y_mean = (w[..., None] * y).sum(-2, keepdim=True) / count
    xc = (x - x_mean) * w[..., None]
    yc = (y - y_mean) * w[..., None]
    cov = xc.transpose(-1, -2) @ yc  # [..., 3, 3] = sum_i x_i y_i^T
    u, _, vh = torch.linalg.svd(cov)
    d = torch.sign(torch.linalg.det(vh.transpose(-1, -2) @ u.transpose(-1, -2)))
    d = torch.where(d == 0, torch.ones_like(d), d)
    diag = torch.ones(*d.shape, 3, dtype=torch.float64, device=d.device)
    diag[..., 2] = d
    rots = vh.transpose(-1, -2) @ (diag[..., None] * u.transpose(-1, -2))  # V diag(1,1,d) U^T
    trans = y_mean.squeeze(-2) - torch.einsum("...ij,...j->...i", rots, x_mean.squeeze(-2))
    return rots.to(mobile.dtype), trans.to(mobile.dtype)


def superpose(mobile: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """``mobile`` moved by its Kabsch superposition onto ``target``. Shapes as in :func:`kabsch`; returns ``[..., N, 3]``."""
    rots, trans = kabsch(mobile, target, mask)
    return rigid.apply(rots[..., None, :, :], trans[..., None, :], mobile)


def rmsd(x: Tensor, y: Tensor, mask: Tensor | None = None, align: bool = True) -> Tensor:
    """True root-mean-square deviation ``sqrt(sum_i |x_i - y_i|^2 / n_valid)`` over valid points.

    Args:
        x, y: ``[..., N, 3]``.
        mask: optional ``[..., N]``.
        align: superpose x onto y (Kabsch on the valid points) first.
    Returns:
        ``[...]`` in the input dtype; NaN for rows with no valid point.
    """
    if x.shape != y.shape or x.shape[-1] != 3:
        raise ValueError(f"rmsd: x and y must both be [..., N, 3], got {tuple(x.shape)} and {tuple(y.shape)}")
    if align:
        x = superpose(x, y, mask)
    w = _weights(x, mask).to(x.dtype)
    sq = ((x - y) ** 2).sum(-1)
    n = w.sum(-1)
    return torch.sqrt((w * sq).sum(-1) / n)
