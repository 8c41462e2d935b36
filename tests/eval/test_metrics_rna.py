"""RNA geometry metrics of sampled backbones (flowbb.eval.metrics.rna_backbone_metrics) on real chains of
../shared/data/rna, their rebuilds from frames + torsions, and broken copies."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from flowbb.data.nucleic import read_rna_chains
from flowbb.eval.metrics import rna_backbone_metrics
from flowbb.geometry import rna
from flowbb.molecules import get_molecule

FILES = ("medium__1XJR__A.pdb.gz", "grnade__RCSB__B.pdb.gz", "medium__3D2V__A.pdb.gz", "medium__7jl2_x__X.pdb.gz")


@pytest.fixture(scope="module")
def chains(shared_data: Path) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(atoms [L, 12, 3] float64, atom_mask [L, 12]) of the nucleotides with a frame, per chain."""
    out = []
    for name in FILES:
        chain = read_rna_chains(shared_data / "rna" / name)[0]
        ok = chain.atom_mask[:, :3].all(1)
        out.append((torch.from_numpy(chain.atoms[ok]).double(), torch.from_numpy(chain.atom_mask[ok])))
    return out


def _metrics(atoms: torch.Tensor, atom_mask: torch.Tensor | None = None, link_break: float | None = None) -> dict:
    mask = None if atom_mask is None else atom_mask[None]
    return rna_backbone_metrics(atoms[None], torch.ones(1, len(atoms)), mask, link_break)[0]


def test_real_chains_look_real(chains: list) -> None:
    for atoms, mask in chains:
        m = _metrics(atoms, mask, rna.LINK_BREAK)
        assert 5.5 <= m["c4_c4_mean"] <= 6.8 and m["c4_c4_in_range"] >= 0.5 and m["clashes"] == 0
        assert m["bond_deviation"] < 0.02 and m["angle_deviation"] < 2.5 and abs(m["o3p_mean"] - 1.61) < 0.03
        assert 0.6 < m["rg_ratio"] < 2.5 and m["length"] == len(atoms)


def test_rebuilt_chains_keep_c4_trace_and_bonds(chains: list) -> None:
    """Frames + torsions -> 12 atoms (the sampler's rebuild): the C4' trace is the real one; bonds and angles stay
    near the real medians (the O3'-P link is not placed by the rebuild, so it is measured, not fixed)."""
    molecule = get_molecule("rna")
    for atoms, mask in chains:
        clean = molecule.clean(atoms[None], mask[None], torch.ones(1, len(atoms), dtype=torch.float64),
                               torch.arange(len(atoms))[None])
        rebuilt = molecule.rebuild(clean["rots_1"], clean["trans_1"], clean["torsions_1"])[0]
        real, m = _metrics(atoms, mask, rna.LINK_BREAK), _metrics(rebuilt)
        assert m["c4_c4_mean"] == pytest.approx(real["c4_c4_mean"], abs=1e-9)
        assert m["rg"] == pytest.approx(real["rg"], abs=1e-9) and m["clashes"] == real["clashes"]
        assert m["bond_deviation"] < 0.1 and m["angle_deviation"] < 5.0


def test_broken_geometry_is_flagged(chains: list) -> None:
    atoms, _ = chains[0]
    squashed = _metrics(atoms * 0.5)  # everything at half scale: C4' pairs too close, bonds too short
    assert squashed["clashes"] > 0 and squashed["c4_c4_in_range"] < 0.1 and squashed["bond_deviation"] > 0.5
    assert squashed["c4_c4_mean"] == pytest.approx(0.5 * _metrics(atoms)["c4_c4_mean"])


def test_batched_padded_rows_match_single_chains(chains: list) -> None:
    (a, _), (b, _) = chains[0], chains[1]
    n = max(len(a), len(b))
    atoms = torch.zeros(2, n, 12, 3, dtype=torch.float64)
    atoms[0, : len(a)], atoms[1, : len(b)] = a, b
    mask = torch.zeros(2, n)
    mask[0, : len(a)], mask[1, : len(b)] = 1, 1
    rows = rna_backbone_metrics(atoms, mask)
    for row, single in zip(rows, (_metrics(a), _metrics(b)), strict=True):
        assert row == pytest.approx(single)
    with pytest.raises(ValueError, match=r"\[B, L, 12, 3\]"):
        rna_backbone_metrics(atoms[..., :4, :], mask)
