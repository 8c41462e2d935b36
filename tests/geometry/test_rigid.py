"""Rigid-frame algebra and Gram-Schmidt frames on real backbones."""

from __future__ import annotations

import torch

from flowbb.geometry import rigid, so3


def test_frames_from_real_backbone_are_rotations(ddg_chains: list) -> None:
    atoms = torch.from_numpy(ddg_chains[0].atoms)
    rots, trans = rigid.frames_from_backbone(atoms[:, 0], atoms[:, 1], atoms[:, 2])
    eye = torch.eye(3, dtype=torch.float64)
    assert (rots @ rots.transpose(-1, -2) - eye).abs().max() < 1e-12
    assert (torch.linalg.det(rots) - 1).abs().max() < 1e-12
    assert torch.equal(trans, atoms[:, 1])
    local_c = rigid.apply_inverse(rots, trans, atoms[:, 2])
    assert local_c[:, 1:].abs().max() < 1e-12 and (local_c[:, 0] > 1.3).all()  # C on the +x axis
    local_n = rigid.apply_inverse(rots, trans, atoms[:, 0])
    assert local_n[:, 2].abs().max() < 1e-12 and (local_n[:, 1] > 1.0).all()  # N in the xy plane, +y


def test_compose_invert_apply() -> None:
    gen = torch.Generator().manual_seed(0)
    ra, rb = so3.sample_uniform((2, 5), gen, dtype=torch.float64).unbind(0)
    ta, tb = torch.randn(2, 5, 3, generator=gen, dtype=torch.float64).unbind(0)
    x = torch.randn(5, 3, generator=gen, dtype=torch.float64)
    rc, tc = rigid.compose(ra, ta, rb, tb)
    torch.testing.assert_close(
        rigid.apply(rc, tc, x), rigid.apply(ra, ta, rigid.apply(rb, tb, x)), rtol=0, atol=1e-12
    )
    ri, ti = rigid.invert(ra, ta)
    r_id, t_id = rigid.compose(ri, ti, ra, ta)
    ident_r, ident_t = rigid.identity((5,), torch.float64)
    torch.testing.assert_close(r_id, ident_r, rtol=0, atol=1e-12)
    torch.testing.assert_close(t_id, ident_t, rtol=0, atol=1e-12)
    torch.testing.assert_close(rigid.apply_inverse(ra, ta, rigid.apply(ra, ta, x)), x, rtol=0, atol=1e-12)


def test_frames_of_zero_padding_are_zero() -> None:
    z = torch.zeros(4, 3)
    rots, trans = rigid.frames_from_backbone(z, z, z)
    assert torch.equal(rots, torch.zeros(4, 3, 3)) and torch.equal(trans, z)


def test_mask_frames_resets_padding_only() -> None:
    gen = torch.Generator().manual_seed(1)
    rots = so3.sample_uniform((2, 6), gen, dtype=torch.float64)
    trans = torch.randn(2, 6, 3, generator=gen, dtype=torch.float64)
    rots[1, 4:] = float("nan")  # whatever padding holds
    mask = torch.ones(2, 6, dtype=torch.float64)
    mask[1, 4:] = 0
    for m in (mask, mask.bool()):
        r, t = rigid.mask_frames(rots, trans, m)
        assert torch.equal(r[0], rots[0]) and torch.equal(t[0], trans[0]) and torch.equal(r[1, :4], rots[1, :4])
        assert torch.equal(r[1, 4:], torch.eye(3, dtype=torch.float64).expand(2, 3, 3))
        assert torch.equal(t[1, 4:], torch.zeros(2, 3, dtype=torch.float64))
