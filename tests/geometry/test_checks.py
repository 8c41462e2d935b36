"""Geometry checks on constructed CA traces (closed forms) and brute-force comparisons."""

from __future__ import annotations

import math

import pytest
import torch

from flowbb.geometry import checks


def _line(n: int, spacing: float, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    ca = torch.zeros(n, 3, dtype=dtype)
    ca[:, 0] = spacing * torch.arange(n, dtype=dtype)
    return ca


def test_radius_of_gyration_closed_forms() -> None:
    # six octahedron vertices at radius 2 (centroid at the origin): Rg = 2
    octa = 2.0 * torch.cat([torch.eye(3), -torch.eye(3)]).double() + torch.tensor([1.0, -2.0, 3.0]).double()
    assert abs(checks.radius_of_gyration(octa, torch.ones(6)).item() - 2.0) < 1e-12
    # n evenly spaced points: Rg = a sqrt((n^2 - 1) / 12)
    n, a = 11, 3.8
    rg = checks.radius_of_gyration(_line(n, a), torch.ones(n)).item()
    assert abs(rg - a * math.sqrt((n * n - 1) / 12)) < 1e-12
    # masked garbage is ignored, batched rows are independent
    ca = torch.stack([torch.cat([octa, torch.full((5, 3), 1e3).double()]), _line(11, a)])
    mask = torch.ones(2, 11)
    mask[0, 6:] = 0
    torch.testing.assert_close(
        checks.radius_of_gyration(ca, mask), torch.tensor([2.0, rg], dtype=torch.float64), rtol=0, atol=1e-9
    )


def test_ca_ca_distances_and_deviation() -> None:
    ca = _line(6, 4.0)
    mask = torch.ones(6, dtype=torch.bool)
    dist, valid = checks.ca_ca_distances(ca, mask)
    assert dist.shape == (5,) and valid.all()
    torch.testing.assert_close(dist, torch.full((5,), 4.0).double(), rtol=0, atol=1e-12)
    assert abs(checks.ca_ca_deviation(ca, mask).item() - 0.2) < 1e-12
    assert checks.ca_ca_deviation(_line(6, 3.8), mask).item() < 1e-12
    # a masked middle residue removes its two pairs; stretch one remaining bond
    ca[4:] += torch.tensor([1.0, 0.0, 0.0]).double()  # bond 3-4 becomes 5.0
    mask[1] = False
    dist, valid = checks.ca_ca_distances(ca, mask)
    assert valid.tolist() == [False, False, True, True, True]
    assert dist[0] == 0 and dist[1] == 0
    assert abs(checks.ca_ca_deviation(ca, mask).item() - (0.2 + 1.2 + 0.2) / 3) < 1e-12
    assert torch.isnan(checks.ca_ca_deviation(ca[:1], mask[:1]))


def _brute_force_clashes(ca: torch.Tensor, mask: torch.Tensor, threshold: float, min_seq_sep: int) -> int:
    count = 0
    n = ca.shape[0]
    for i in range(n):
        for j in range(i + min_seq_sep, n):
            if mask[i] and mask[j] and (ca[i] - ca[j]).norm() < threshold:
                count += 1
    return count


def test_count_clashes_constructed() -> None:
    mask = torch.ones(10, dtype=torch.bool)
    assert checks.count_clashes(_line(10, 3.8), mask).item() == 0
    # fold a hairpin: residue 5 placed 2 Å from residue 0
    ca = _line(10, 3.8)
    ca[5] = torch.tensor([0.0, 2.0, 0.0]).double()
    assert checks.count_clashes(ca, mask).item() == 1
    # residues 0 and 2 at 2 Å: separation 2 counts only with min_seq_sep <= 2
    ca = _line(10, 3.8)
    ca[2] = torch.tensor([0.0, 2.0, 0.0]).double()
    assert checks.count_clashes(ca, mask, min_seq_sep=3).item() == 0
    assert checks.count_clashes(ca, mask, min_seq_sep=2).item() == 1
    mask[2] = False
    assert checks.count_clashes(ca, mask, min_seq_sep=2).item() == 0
    with pytest.raises(ValueError, match="min_seq_sep"):
        checks.count_clashes(ca, mask, min_seq_sep=0)


def test_count_clashes_chunked_equals_brute_force() -> None:
    gen = torch.Generator().manual_seed(0)
    ca = torch.rand(3, 70, 3, generator=gen, dtype=torch.float64) * 18  # dense box: many close pairs
    mask = torch.rand(3, 70, generator=gen) > 0.2
    mask[2, 40:] = False
    expected = torch.tensor([_brute_force_clashes(ca[b], mask[b], 3.0, 3) for b in range(3)])
    assert expected.min() > 0
    for chunk in [1, 7, 32, 70, 512]:
        got = checks.count_clashes(ca, mask, threshold=3.0, min_seq_sep=3, chunk_size=chunk)
        assert got.dtype == torch.long
        assert torch.equal(got, expected), chunk
    # dense reference with the full L x L matrix
    d = torch.cdist(ca, ca)
    i, j = torch.meshgrid(torch.arange(70), torch.arange(70), indexing="ij")
    pair = (j - i >= 3) & mask[:, :, None] & mask[:, None, :] & (d < 3.0)
    assert torch.equal(pair.sum((-1, -2)), expected)
