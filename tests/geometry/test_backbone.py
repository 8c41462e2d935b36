"""Ideal backbone from frames, psi and dihedrals, checked on every chain of ../shared/data/pdb/ddg."""

from __future__ import annotations

import math

import biotite.structure as struc
import numpy as np
import pytest
import torch

from flowbb.geometry import backbone, rigid, so3


def _rmsd(a: torch.Tensor, b: torch.Tensor) -> float:
    """Root-mean-square distance over all points of ``[..., 3]`` tensors (no superposition)."""
    return ((a - b) ** 2).sum(-1).mean().sqrt().item()


def _frames_psi(chain) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    atoms = torch.from_numpy(chain.atoms)
    rots, trans = rigid.frames_from_backbone(atoms[:, 0], atoms[:, 1], atoms[:, 2])
    psi, psi_mask = backbone.psi_from_backbone(atoms, torch.ones(len(atoms), dtype=torch.bool))
    return atoms, rots, trans, psi, psi_mask


def test_ideal_backbone_matches_every_ddg_chain(ddg_chains: list) -> None:
    """frames -> ideal N, CA, C within 0.1 Å RMSD per chain; O from the real psi within 0.35 Å."""
    worst = {"NCAC": 0.0, "N": 0.0, "C": 0.0, "O": 0.0}
    for chain in ddg_chains:
        atoms, rots, trans, psi, psi_mask = _frames_psi(chain)
        ideal = backbone.backbone_from_frames(rots, trans, psi)
        assert ideal.shape == atoms.shape
        ncac = _rmsd(ideal[:, :3], atoms[:, :3])
        assert ncac < 0.1, (chain.name, ncac)
        assert torch.equal(ideal[:, 1], atoms[:, 1])  # CA is the frame origin
        # O: only residues whose psi exists (the last residue of each segment is excluded)
        assert psi_mask.sum() >= len(atoms) - 1 - 5, chain.name
        o_rmsd = _rmsd(ideal[psi_mask, 3], atoms[psi_mask, 3])
        assert o_rmsd < 0.35, (chain.name, o_rmsd)
        for key, val in [
            ("NCAC", ncac),
            ("N", _rmsd(ideal[:, 0], atoms[:, 0])),
            ("C", _rmsd(ideal[:, 2], atoms[:, 2])),
            ("O", o_rmsd),
        ]:
            worst[key] = max(worst[key], val)
    # per-atom bounds, tighter than the combined one: C is on the CA->C axis (bond length only)
    assert worst["C"] < 0.05 and worst["N"] < 0.15, worst
    print("worst-chain RMSDs (Å):", {k: round(v, 4) for k, v in worst.items()})


def test_psi_matches_biotite_dihedral(ddg_chains: list) -> None:
    """psi_i = dihedral(N_i, CA_i, C_i, N_{i+1}) with the IUPAC sign, against biotite's dihedral."""
    for chain in ddg_chains[:20]:
        _, _, _, psi, psi_mask = _frames_psi(chain)
        x = chain.atoms
        ref = struc.dihedral(x[:-1, 0], x[:-1, 1], x[:-1, 2], x[1:, 0])
        diff = np.angle(np.exp(1j * (psi[:-1].numpy() - ref)))
        assert np.abs(diff[psi_mask[:-1].numpy()]).max() < 1e-5, chain.name  # biotite works in float32
    # alpha helices have psi near -45 degrees: the most populated 30-degree bin over all chains
    all_psi = torch.cat([_frames_psi(c)[3][_frames_psi(c)[4]] for c in ddg_chains[:20]])
    hist = torch.histc(torch.rad2deg(all_psi), bins=12, min=-180, max=180)
    assert -60 <= -180 + 30 * int(hist.argmax()) <= -30


def test_oxygen_trans_to_next_n() -> None:
    """Placed O has dihedral(N, CA, C, O) = psi + pi and the AF2 C=O length / CA-C-O angle."""
    psi = torch.linspace(-math.pi, math.pi, 25, dtype=torch.float64)
    rots = so3.sample_uniform((25,), torch.Generator().manual_seed(0), dtype=torch.float64)
    trans = torch.randn(25, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 10
    atoms = backbone.backbone_from_frames(rots, trans, psi)
    n, ca, c, o = atoms.unbind(-2)
    d = backbone.dihedral(n, ca, c, o)
    diff = torch.remainder(d - psi - math.pi + math.pi, 2 * math.pi) - math.pi
    assert diff.abs().max() < 1e-12
    co = (o - c).norm(dim=-1)
    torch.testing.assert_close(co, torch.full_like(co, math.hypot(0.627, 1.062)), rtol=0, atol=1e-12)
    cos_cao = ((ca - c) * (o - c)).sum(-1) / ((ca - c).norm(dim=-1) * co)
    expected = math.cos(math.pi - math.atan2(1.062, 0.627))
    torch.testing.assert_close(cos_cao, torch.full_like(cos_cao, expected), rtol=0, atol=1e-12)
    # ideal bond lengths of the AF2 residue frame
    torch.testing.assert_close(
        (n - ca).norm(dim=-1), torch.full_like(co, math.hypot(0.525, 1.363)), rtol=0, atol=1e-12
    )
    torch.testing.assert_close((c - ca).norm(dim=-1), torch.full_like(co, 1.526), rtol=0, atol=1e-12)


def test_oxygen_from_next_n_equals_frame_construction(ddg_chains: list) -> None:
    atoms, rots, trans, psi, _ = _frames_psi(ddg_chains[0])
    o = backbone.oxygen_from_next_n(atoms[:-1, 0], atoms[:-1, 1], atoms[:-1, 2], atoms[1:, 0])
    ideal = backbone.backbone_from_frames(rots, trans, psi)
    torch.testing.assert_close(o, ideal[:-1, 3], rtol=0, atol=1e-12)


def test_dihedral_sign_and_special_values() -> None:
    b = torch.zeros(3, dtype=torch.float64)
    c = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    a = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    for phi in [0.0, 0.5, math.pi / 2, 2.5, -0.7, -math.pi / 2]:
        d = torch.tensor([math.cos(phi), math.sin(phi), 1.0], dtype=torch.float64)
        ref = struc.dihedral(a.numpy(), b.numpy(), c.numpy(), d.numpy())
        assert abs(backbone.dihedral(a, b, c, d).item() - phi) < 1e-12
        # biotite agrees on the sign; it may compute in float32 (biotite 1.6 returns float32: ~6e-8 off)
        assert abs(float(ref) - phi) < 1e-6
    d = torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64)
    assert abs(abs(backbone.dihedral(a, b, c, d).item()) - math.pi) < 1e-12


def test_psi_mask_breaks_padding_and_numbering(ddg_chains: list) -> None:
    chain = max(ddg_chains, key=lambda ch: len(ch.atoms))
    atoms = torch.from_numpy(chain.atoms[:40]).clone()
    length = len(atoms)
    atoms[20:] += torch.tensor([0.0, 0.0, 5.0], dtype=torch.float64)  # break between 19 and 20
    mask = torch.ones(length, dtype=torch.bool)
    psi, psi_mask = backbone.psi_from_backbone(atoms, mask)
    assert not psi_mask[19] and not psi_mask[-1] and psi_mask[:19].all() and psi_mask[20:-1].all()
    assert psi[19] == 0 and psi[-1] == 0
    # residue numbering that restarts invalidates psi there
    index = torch.cat([torch.arange(30), torch.arange(10)])
    _, pm = backbone.psi_from_backbone(torch.from_numpy(chain.atoms[:40]), mask, index)
    assert not pm[29] and pm[:29].all() and pm[30:-1].all()
    # batched with padding: padded rows give psi_mask False and do not change valid values
    batch = torch.zeros(2, 50, 4, 3, dtype=torch.float64)
    batch[0, :40] = atoms
    batch[1, :30] = atoms[:30]
    bmask = torch.zeros(2, 50, dtype=torch.bool)
    bmask[0, :40] = True
    bmask[1, :30] = True
    bpsi, bpm = backbone.psi_from_backbone(batch, bmask)
    torch.testing.assert_close(bpsi[0, :40], psi, rtol=0, atol=0)
    assert not bpm[0, 39:].any() and not bpm[1, 29:].any()
    with pytest.raises(ValueError, match="psi_from_backbone"):
        backbone.psi_from_backbone(batch, bmask[:, :10])


def test_backbone_from_frames_equivariant_and_masked() -> None:
    gen = torch.Generator().manual_seed(2)
    rots = so3.sample_uniform((2, 7), gen, dtype=torch.float64)
    trans = torch.randn(2, 7, 3, generator=gen, dtype=torch.float64)
    psi = torch.rand(2, 7, generator=gen, dtype=torch.float64) * 6 - 3
    g_rot = so3.sample_uniform((), gen, dtype=torch.float64)
    g_trans = torch.randn(3, generator=gen, dtype=torch.float64)
    atoms = backbone.backbone_from_frames(rots, trans, psi)
    moved = backbone.backbone_from_frames(g_rot @ rots, trans @ g_rot.T + g_trans, psi)
    torch.testing.assert_close(moved, atoms @ g_rot.T + g_trans, rtol=0, atol=1e-12)
    mask = torch.ones(2, 7)
    mask[1, 4:] = 0
    masked = backbone.backbone_from_frames(rots, trans, psi, res_mask=mask)
    assert (masked[1, 4:] == 0).all()
    torch.testing.assert_close(masked[0], atoms[0], rtol=0, atol=0)
    f32 = backbone.backbone_from_frames(rots.float(), trans.float(), psi.float())
    assert f32.dtype == torch.float32 and (f32.double() - atoms).abs().max() < 1e-5


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_so3_maps_on_every_ddg_frame(ddg_chains: list, dtype: torch.dtype) -> None:
    """exp(log(R)) == R and exact geodesic endpoints for the residue frames of every ddg chain."""
    atoms = torch.cat([torch.from_numpy(c.atoms) for c in ddg_chains]).to(dtype)
    rots, _ = rigid.frames_from_backbone(atoms[:, 0], atoms[:, 1], atoms[:, 2])
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert (so3.exp(so3.log(rots)) - rots).abs().max() < tol
    r0, r1 = rots[:-1], rots[1:]  # consecutive residues: rotations of all sizes, up to ~pi
    assert torch.equal(so3.geodesic(r0, r1, torch.zeros(len(r0), dtype=dtype)), r0)
    assert (so3.geodesic(r0, r1, torch.ones(len(r0), dtype=dtype)) - r1).abs().max() < tol
    q = so3.rotmat_to_quat(rots)
    assert (so3.quat_to_rotmat(q) - rots).abs().max() < tol
