"""k-nearest-neighbour search over point clouds with padding, in O(L k) memory.

The search is chunked over query points: each chunk computes distances to all keys
(``[B, chunk, L]``), masks itself and padding, and keeps the ``k`` smallest. Peak memory is
``O(B * chunk * L + B * L * k)``, never ``O(L^2)`` for fixed ``chunk_size``.
"""

from __future__ import annotations

import torch

Tensor = torch.Tensor


CHUNK_ELEMENTS = 1 << 22  # distances per chunk when chunk_size is None (16 MB in float32)


def knn(x: Tensor, mask: Tensor, k: int, chunk_size: int | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """The ``k`` nearest valid neighbours of every point (itself and padding excluded).

    Args:
        x: points ``[B, L, 3]`` (any float dtype).
        mask: validity ``[B, L]`` (bool or float 0/1).
        k: neighbours per point (``k >= 1``).
        chunk_size: queries per chunk; memory of one chunk is ``B * chunk_size * L`` distances. None: about
            ``CHUNK_ELEMENTS`` distances per chunk (memory independent of L).
    Returns:
        idx ``[B, L, k]`` long: neighbour indices, sorted by increasing distance (up to rounding); 0 where
            ``nbr_mask`` is False.
        dist ``[B, L, k]``: Euclidean distances ``|x_i - x_idx|`` (differentiable w.r.t. ``x``); 0 where masked.
        nbr_mask ``[B, L, k]`` bool: True for real neighbours. False for every slot of a padded query and for
        the slots beyond the number of valid neighbours when a chain has fewer than ``k + 1`` valid points.
    """
    if x.dim() != 3 or x.shape[-1] != 3:
        raise ValueError(f"knn: x must be [B, L, 3], got {tuple(x.shape)}")
    if mask.shape != x.shape[:2]:
        raise ValueError(f"knn: mask must be [B, L] = {tuple(x.shape[:2])}, got {tuple(mask.shape)}")
    if k < 1:
        raise ValueError(f"knn: k must be >= 1, got {k}")
    B, L, _ = x.shape
    if chunk_size is None:
        chunk_size = max(1, CHUNK_ELEMENTS // max(B * L, 1))
    if chunk_size < 1:
        raise ValueError(f"knn: chunk_size must be >= 1, got {chunk_size}")
    valid = mask.bool()
    k_eff = min(k, max(L - 1, 0))
    idx = torch.zeros(B, L, k, dtype=torch.long, device=x.device)
    found = torch.zeros(B, L, k, dtype=torch.bool, device=x.device)
    if k_eff > 0:
        with torch.no_grad():
            # Selection on |x_i|^2 + |x_j|^2 - 2 x_i.x_j (one batched GEMM per chunk) around the centroid;
            # the returned distances are recomputed exactly from the coordinates below.
            xd = x.detach()
            xd = xd - xd.mean(dim=1, keepdim=True)
            sq = (xd * xd).sum(-1)  # [B, L]
            key_term = sq.masked_fill(~valid, float("inf"))[:, None, :]  # [B, 1, L]; padding never selected
            xt = xd.transpose(1, 2)  # [B, 3, L]
            for start in range(0, L, chunk_size):
                stop = min(start + chunk_size, L)
                xq = xd[:, start:stop]  # [B, C, 3]
                d2 = torch.baddbmm(key_term, xq, xt, alpha=-2.0)  # [B, C, L]
                d2 += sq[:, start:stop, None]
                d2.diagonal(offset=start, dim1=1, dim2=2).fill_(float("inf"))  # never self
                vals, nb = torch.topk(d2, k_eff, dim=-1, largest=False, sorted=True)  # [B, C, k_eff]
                idx[:, start:stop, :k_eff] = nb
                found[:, start:stop, :k_eff] = torch.isfinite(vals)
    nbr_mask = found & valid[:, :, None]
    idx = idx.masked_fill(~nbr_mask, 0)
    nbr = torch.gather(x, 1, idx.reshape(B, L * k, 1).expand(B, L * k, 3)).reshape(B, L, k, 3)
    diff = torch.where(
        nbr_mask[..., None], nbr - x[:, :, None, :], torch.zeros((), dtype=x.dtype, device=x.device)
    )
    # sqrt with a safe gradient at 0 (masked slots): sqrt(max(d2, tiny)) then zero the masked ones.
    d2 = (diff * diff).sum(-1)
    tiny = torch.finfo(x.dtype).tiny
    dist = torch.where(
        nbr_mask, torch.sqrt(d2.clamp_min(tiny)), torch.zeros((), dtype=x.dtype, device=x.device)
    )
    return idx, dist, nbr_mask
