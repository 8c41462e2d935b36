"""Sample-quality scores of the learning benchmark on real chains of ../shared/data/pdb/ddg."""

from __future__ import annotations

from pathlib import Path

import biotite.structure as struc
import numpy as np
import pytest

from flowbb.data.structure_io.read import read_chains
from flowbb.eval.sample_quality import (
    RamachandranRegion,
    group_summary,
    phi_psi,
    structure_quality,
)
from flowbb.geometry.checks import folded_rg


@pytest.fixture(scope="module")
def chains(ddg_files: list[Path]) -> list:
    """Complete chains (every residue with N, CA, C, O) of >= 60 residues, one per file."""
    out = []
    for path in ddg_files:
        ch = read_chains(path).chains[0]
        if ch.atom_mask.all() and len(ch.atoms) >= 60:
            out.append(ch)
    assert len(out) >= 20
    return out


def _angles(chs: list) -> tuple[np.ndarray, np.ndarray]:
    got = [phi_psi(c.atoms, c.atom_mask) for c in chs]
    return np.concatenate([g[0][g[2]] for g in got]), np.concatenate([g[1][g[2]] for g in got])


def test_phi_psi_match_biotite_and_stop_at_chain_breaks(chains: list) -> None:
    for ch in chains[:5]:
        x = ch.atoms.astype(np.float64)
        phi, psi, ok = phi_psi(x, ch.atom_mask)
        ref_phi = np.rad2deg(struc.dihedral(x[:-1, 2], x[1:, 0], x[1:, 1], x[1:, 2]))  # C_{i-1} N CA C
        ref_psi = np.rad2deg(struc.dihedral(x[:-1, 0], x[:-1, 1], x[:-1, 2], x[1:, 0]))  # N CA C N_{i+1}
        inner = ok[1:-1]
        wrap = lambda a: (a + 180.0) % 360.0 - 180.0
        assert np.abs(wrap(phi[1:-1] - ref_phi[:-1]))[inner].max() < 1e-3
        assert np.abs(wrap(psi[1:-1] - ref_psi[1:]))[inner].max() < 1e-3
        assert not ok[0] and not ok[-1] and ok[1:-1].mean() > 0.95
    broken = chains[0].atoms.copy()
    broken[30:] += np.array([0.0, 0.0, 6.0])  # a 6 Å gap between residues 29 and 30
    _, _, ok = phi_psi(broken, chains[0].atom_mask)
    assert not ok[29] and not ok[30] and ok[28] and ok[31]
    _, _, ok_gen = phi_psi(broken, chains[0].atom_mask, max_bond=None)  # generated: always bonded
    assert ok_gen[29] and ok_gen[30]


def test_ramachandran_region_from_natural_chains(chains: list) -> None:
    """Built from 12 chains, the region holds >= 95 % of the other chains' pairs, the alpha and beta basins, but
    not uniformly random angles or the empty phi > 0, psi ~ -120 corner."""
    region = RamachandranRegion.from_angles(*_angles(chains[:12]), coverage=0.98)
    assert region.allowed_fraction(*_angles(chains[12:])) >= 0.95
    assert region.allowed_fraction(np.array([-63.0, -120.0]), np.array([-43.0, 130.0])) == 1.0
    assert region.allowed_fraction(np.array([60.0, 100.0]), np.array([-120.0, -150.0])) == 0.0
    rng = np.random.default_rng(0)
    uniform = rng.uniform(-180, 180, size=(2, 20000))
    assert region.allowed_fraction(*uniform) < 0.4
    assert np.isnan(region.allowed_fraction(np.array([]), np.array([])))
    with pytest.raises(ValueError, match="no \\(phi, psi\\)"):
        RamachandranRegion.from_angles(np.array([]), np.array([]))


def test_structure_quality_of_natural_and_broken_backbones(chains: list) -> None:
    from flowbb.eval.inverse_folding import ProteinMPNNDesigner

    region = RamachandranRegion.from_angles(*_angles(chains[1:]))
    ch = chains[0]
    designer = ProteinMPNNDesigner(num_seqs=2, device="cpu")
    q = structure_quality(ch.atoms, ch.atom_mask, region, sequence=ch.sequence, designer=designer)
    assert q["length"] == len(ch.atoms)
    assert q["ca_ca_deviation"] < 0.1 and q["clashes_per_100"] == 0.0
    assert 0.7 < q["rg_ratio"] < 1.4 and q["rama_allowed"] >= 0.9
    assert q["helix_frac"] + q["strand_frac"] > 0.3
    assert 0.3 < q["mpnn_nll"] < 2.5
    # a collapsed random walk of 3.8 Å steps with the same frames: bad geometry, no secondary structure
    rng = np.random.default_rng(1)
    scrambled = ch.atoms + rng.normal(scale=2.0, size=ch.atoms.shape)
    bad = structure_quality(scrambled, ch.atom_mask, region, generated=True)
    assert bad["ca_ca_deviation"] > 1.0 and bad["rama_allowed"] < q["rama_allowed"]
    assert np.isnan(bad["mpnn_nll"])  # no designer given
    summary = group_summary([q, bad])
    assert summary["count"] == 2 and summary["ca_ca_deviation_max"] == bad["ca_ca_deviation"]
    assert summary["mpnn_nll"] == q["mpnn_nll"]  # NaN-aware mean
    np.testing.assert_allclose(folded_rg(100), 2.2 * 100**0.38)
