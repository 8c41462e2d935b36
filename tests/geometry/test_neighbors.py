"""kNN search: matches brute force, never returns self or padding, masks missing neighbours."""

from __future__ import annotations

import pytest
import torch

from flowbb.geometry.neighbors import knn


def _brute_force(x: torch.Tensor, mask: torch.Tensor, k: int):
    """Reference: full distance matrix, self and padding at +inf, sorted."""
    _B, L, _ = x.shape
    d = torch.cdist(x.double(), x.double())
    bad = ~mask.bool()[:, None, :] | torch.eye(L, dtype=torch.bool)[None]
    d = d.masked_fill(bad, float("inf"))
    vals, idx = torch.sort(d, dim=-1)
    return vals[..., :k], idx[..., :k]


def _batch(dtype: torch.dtype, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    B, L = 3, 37
    x = torch.randn(B, L, 3, generator=g, dtype=dtype) * 8.0
    mask = torch.ones(B, L)
    mask[1, 25:] = 0  # trailing padding
    mask[2, ::4] = 0  # scattered padding
    x[mask == 0] = 0.0  # padding sits at the origin, close to real points
    return x, mask


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("chunk_size", [1, 5, 16, 1000])
def test_knn_matches_brute_force(dtype, chunk_size):
    x, mask = _batch(dtype)
    k = 6
    idx, dist, nbr_mask = knn(x, mask, k, chunk_size=chunk_size)
    assert idx.shape == dist.shape == nbr_mask.shape == (3, 37, k)
    assert idx.dtype == torch.long and nbr_mask.dtype == torch.bool and dist.dtype == dtype
    ref_d, ref_idx = _brute_force(x, mask, k)
    valid_q = mask.bool()
    assert torch.equal(nbr_mask, valid_q[..., None].expand_as(nbr_mask))
    assert torch.equal(idx[valid_q], ref_idx[valid_q])  # random points: no ties
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(dist[valid_q].double(), ref_d[valid_q], atol=tol, rtol=tol)
    assert (dist[~nbr_mask] == 0).all() and (idx[~nbr_mask] == 0).all()


def test_knn_never_self_or_padding():
    x, mask = _batch(torch.float32, seed=3)
    idx, _, nbr_mask = knn(x, mask, 10, chunk_size=7)
    B, L, k = idx.shape
    self_idx = torch.arange(L)[None, :, None].expand(B, L, k)
    assert not (nbr_mask & (idx == self_idx)).any()
    nbr_valid = torch.gather(mask.bool(), 1, idx.reshape(B, -1)).reshape(B, L, k)
    assert not (nbr_mask & ~nbr_valid).any()
    assert not nbr_mask[~mask.bool()].any()  # padded queries have no neighbours


def test_knn_fewer_valid_points_than_k():
    x = torch.randn(2, 9, 3, dtype=torch.float64)
    mask = torch.zeros(2, 9)
    mask[0, :4] = 1  # 3 neighbours available per valid query
    mask[1, :1] = 1  # a single residue: no neighbours
    _, dist, nbr_mask = knn(x, mask, 5, chunk_size=4)
    assert (dist[~nbr_mask] == 0).all()
    assert nbr_mask[0, :4].sum(-1).tolist() == [3, 3, 3, 3]
    assert torch.equal(nbr_mask[0, :4, :3], torch.ones(4, 3, dtype=torch.bool))
    assert not nbr_mask[0, 4:].any() and not nbr_mask[1].any()
    # k larger than L - 1 still returns k slots
    idx, _dist, nbr_mask = knn(x[:, :3], torch.ones(2, 3), 5)
    assert idx.shape == (2, 3, 5) and nbr_mask.sum(-1).eq(2).all()


def test_knn_distance_gradient_is_finite_with_coincident_points():
    x = torch.randn(1, 6, 3, dtype=torch.float64)
    x[0, 1] = x[0, 0]  # zero distance pair
    x.requires_grad_(True)
    _, dist, nbr_mask = knn(x, torch.ones(1, 6), 3)
    dist.sum().backward()
    assert torch.isfinite(x.grad).all()
    assert nbr_mask.all()


def test_knn_rejects_bad_shapes():
    with pytest.raises(ValueError, match="x must be"):
        knn(torch.zeros(2, 5), torch.ones(2, 5), 2)
    with pytest.raises(ValueError, match="mask must be"):
        knn(torch.zeros(2, 5, 3), torch.ones(2, 4), 2)
    with pytest.raises(ValueError, match="k must be"):
        knn(torch.zeros(2, 5, 3), torch.ones(2, 5), 0)
