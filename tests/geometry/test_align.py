"""Kabsch superposition and RMSD against a numpy reference and on real chains."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flowbb.geometry import align, rigid, so3


def _numpy_kabsch_rmsd(x: np.ndarray, y: np.ndarray) -> float:
    """Textbook Kabsch (numpy SVD, reflection-corrected), RMSD after superposing x onto y."""
    xc, yc = x - x.mean(0), y - y.mean(0)
    u, _, vt = np.linalg.svd(xc.T @ yc)
    d = np.sign(np.linalg.det(vt.T @ u.T))
    rot = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    return float(np.sqrt(((xc @ rot.T - yc) ** 2).sum(-1).mean()))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rigid_copy_of_real_chain_has_zero_rmsd(ddg_chains: list, dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(0)
    for chain in ddg_chains[:10]:
        ca = torch.from_numpy(chain.atoms[:, 1]).to(dtype)
        rot = so3.sample_uniform((), gen, dtype=dtype)
        shift = torch.randn(3, generator=gen, dtype=dtype) * 30
        moved = ca @ rot.T + shift
        assert align.rmsd(ca, moved).item() < 1e-4
        rots, trans = align.kabsch(ca, moved)
        assert (torch.linalg.det(rots) - 1).abs() < 1e-5
        tol = 1e-3 if dtype == torch.float32 else 1e-9
        assert (rigid.apply(rots, trans, ca) - moved).abs().max() < tol
        assert (rots - rot).abs().max() < tol / 10


def test_rmsd_matches_numpy_reference(ddg_chains: list) -> None:
    gen = np.random.default_rng(0)
    for chain in ddg_chains[:10]:
        x = chain.atoms[:, 1]
        y = x + gen.normal(scale=1.5, size=x.shape)
        ours = align.rmsd(torch.from_numpy(x), torch.from_numpy(y)).item()
        assert abs(ours - _numpy_kabsch_rmsd(x, y)) < 1e-10
        ours32 = align.rmsd(torch.from_numpy(x).float(), torch.from_numpy(y).float()).item()
        assert abs(ours32 - _numpy_kabsch_rmsd(x, y)) < 1e-4
    # unaligned: the plain root-mean-square distance
    x, y = torch.randn(2, 20, 3, dtype=torch.float64).unbind(0)
    plain = ((x - y) ** 2).sum(-1).mean().sqrt()
    torch.testing.assert_close(align.rmsd(x, y, align=False), plain, rtol=0, atol=1e-14)


def test_mirror_image_gives_proper_rotation() -> None:
    """When the best orthogonal map is a reflection, Kabsch still returns det +1 (and a worse fit)."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(30, 3, generator=gen, dtype=torch.float64) * torch.tensor(
        [5.0, 2.0, 1.0], dtype=torch.float64
    )
    y = x * torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64)  # mirror image
    rots, _ = align.kabsch(x, y)
    assert abs(torch.linalg.det(rots).item() - 1) < 1e-12
    ours = align.rmsd(x, y).item()
    assert ours > 0.5 and abs(ours - _numpy_kabsch_rmsd(x.numpy(), y.numpy())) < 1e-10


def test_mask_and_batch() -> None:
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(3, 25, 3, generator=gen, dtype=torch.float64) * 8
    y = x @ so3.sample_uniform((3,), gen, dtype=torch.float64).transpose(-1, -2) + torch.randn(
        3, 1, 3, generator=gen, dtype=torch.float64
    )
    y = y + 0.3 * torch.randn(3, 25, 3, generator=gen, dtype=torch.float64)
    mask = torch.ones(3, 25, dtype=torch.bool)
    mask[0, 20:] = False
    mask[2, 10:] = False
    garbage_x, garbage_y = x.clone(), y.clone()
    garbage_x[~mask] = 1e3
    garbage_y[~mask] = -1e3
    batched = align.rmsd(garbage_x, garbage_y, mask)
    for b in range(3):
        single = align.rmsd(x[b, mask[b]], y[b, mask[b]])
        torch.testing.assert_close(batched[b], single, rtol=0, atol=1e-12)
        assert abs(single.item() - _numpy_kabsch_rmsd(x[b, mask[b]].numpy(), y[b, mask[b]].numpy())) < 1e-12
    sup = align.superpose(garbage_x, garbage_y, mask)
    resid = ((sup - garbage_y) ** 2).sum(-1)
    torch.testing.assert_close((resid * mask).sum(-1) / mask.sum(-1), batched**2, rtol=0, atol=1e-10)
    assert torch.isnan(align.rmsd(x[:1], y[:1], torch.zeros(1, 25, dtype=torch.bool))).all()
    with pytest.raises(ValueError, match="mask"):
        align.kabsch(x, y, mask[:, :5])
