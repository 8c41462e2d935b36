"""Rigid frames T = (R, t): rotation matrices ``[..., 3, 3]`` and translations ``[..., 3]``.

A frame maps local coordinates to global ones: ``x_global = R @ x_local + t``.
All functions are batched over leading dimensions and work in float32 and float64.
"""

from __future__ import annotations

import torch

Tensor = torch.Tensor


def apply(rots: Tensor, trans: Tensor, points: Tensor) -> Tensor:
    """Map local points to global: ``R @ x + t``.

    Args:
        rots: ``[..., 3, 3]``.
        trans: ``[..., 3]``.
        points: ``[..., 3]`` (broadcast against the frame's leading dims).
    Returns:
        ``[..., 3]``.
    """
    return torch.einsum("...ij,...j->...i", rots, points) + trans


def apply_inverse(rots: Tensor, trans: Tensor, points: Tensor) -> Tensor:
    """Map global points to the local frame: ``R^T (x - t)``. Shapes as in :func:`apply`."""
    return torch.einsum("...ji,...j->...i", rots, points - trans)


def invert(rots: Tensor, trans: Tensor) -> tuple[Tensor, Tensor]:
    """Inverse frame ``(R^T, -R^T t)``. Shapes ``[..., 3, 3]``, ``[..., 3]``."""
    rots_inv = rots.transpose(-1, -2)
    return rots_inv, -torch.einsum("...ij,...j->...i", rots_inv, trans)


def compose(rots_a: Tensor, trans_a: Tensor, rots_b: Tensor, trans_b: Tensor) -> tuple[Tensor, Tensor]:
    """Composition ``T_a o T_b`` (apply b first, then a): ``(R_a R_b, R_a t_b + t_a)``."""
    return rots_a @ rots_b, torch.einsum("...ij,...j->...i", rots_a, trans_b) + trans_a


def frames_from_backbone(n: Tensor, ca: Tensor, c: Tensor, eps: float = 1e-8) -> tuple[Tensor, Tensor]:
    """Residue frames by Gram-Schmidt on (C - CA, N - CA), origin at CA (AlphaFold2 Alg. 21).

    The first axis points from CA to C, the second lies in the N-CA-C plane on N's side,
    the third is their cross product.

    Args:
        n, ca, c: atom coordinates ``[..., 3]``.
    Returns:
        rots ``[..., 3, 3]`` (columns are the local axes in global coordinates), trans ``[..., 3]`` (= CA).
        Residues with coincident atoms (e.g. zero padding) get an all-zero rotation.
    """
    v1 = c - ca
    v2 = n - ca
    # Norms are floored at eps (rather than eps added under the root) so that frames are orthonormal
    # to machine precision; degenerate (e.g. all-zero padding) residues give all-zero rotations.
    e1 = v1 / torch.linalg.vector_norm(v1, dim=-1, keepdim=True).clamp_min(eps)
    u2 = v2 - (e1 * v2).sum(-1, keepdim=True) * e1
    e2 = u2 / torch.linalg.vector_norm(u2, dim=-1, keepdim=True).clamp_min(eps)
    e3 = torch.cross(e1, e2, dim=-1)
    return torch.stack([e1, e2, e3], dim=-1), ca


def identity(
    shape: tuple[int, ...], dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
) -> tuple[Tensor, Tensor]:
    """Identity frames: rots ``[*shape, 3, 3]``, trans ``[*shape, 3]``."""
    rots = torch.eye(3, dtype=dtype, device=device).expand(*shape, 3, 3).clone()
    return rots, torch.zeros(*shape, 3, dtype=dtype, device=device)


def mask_frames(rots: Tensor, trans: Tensor, res_mask: Tensor) -> tuple[Tensor, Tensor]:
    """Identity frames at padded positions: the one place where padding is reset (clean frames of a batch, the
    prior, the path, the network's input and output, every sampler step).

    Args:
        rots: ``[..., L, 3, 3]``; trans: ``[..., L, 3]``; res_mask: ``[..., L]`` (0/1, float or bool).
    Returns:
        (rots, trans) of the same shapes: the identity rotation where ``res_mask`` is 0 (whatever ``rots`` holds
        there, NaN included), ``trans * res_mask`` (zeros at padding); valid positions unchanged, bit for bit.
    """
    m = res_mask.bool()
    eye = torch.eye(3, dtype=rots.dtype, device=rots.device)
    return torch.where(m[..., None, None], rots, eye), trans * res_mask[..., None].to(trans.dtype)
