"""TM-score, self-consistency metrics, diversity clusters.

Kabsch itself (rotated + translated copy < 1e-4 A, agreement with a numpy reference) is tested in
tests/geometry/test_align.py; here the evaluation wrappers built on it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flowbb.eval.diversity import diversity, pairwise_tm, single_linkage_clusters
from flowbb.eval.folding import FoldedStructure
from flowbb.eval.metrics import backbone_metrics, sc_rmsd, self_consistency, summarize_designs
from flowbb.eval.tm import tm_align, tm_score
from flowbb.geometry.checks import folded_rg
from flowbb.geometry.report import PROTEIN_TRACE


def _random_rigid(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return q, rng.normal(scale=25.0, size=3)


def test_tm_score_of_chain_with_itself_is_one(small_chains: list) -> None:
    rng = np.random.default_rng(0)
    for c in small_chains:
        ca = c.atoms[c.atom_mask[:, 1], 1]
        assert tm_score(ca, ca) == pytest.approx(1.0, abs=1e-6)
        rot, shift = _random_rigid(rng)
        res = tm_align(ca, ca @ rot.T + shift, c.sequence, c.sequence)
        assert res.tm_norm_1 == pytest.approx(1.0, abs=1e-6) and res.tm_norm_2 == pytest.approx(1.0, abs=1e-6)
        assert res.rmsd < 1e-3


def test_tm_score_normalisation_and_unrelated_chains(small_chains: list) -> None:
    a = small_chains[0].atoms[:, 1]
    b = small_chains[2].atoms[:, 1]
    r = tm_align(a, b)
    assert r.tm_norm_1 < 0.5 and r.tm_norm_2 < 0.5  # SH3 vs cold-shock protein: different folds
    half = a[: len(a) // 2]
    # a fragment is fully found in its parent: ~1 normalised by the fragment, ~0.5 by the parent
    assert tm_score(half, a) > 0.95
    assert tm_score(a, half) < 0.6
    with pytest.raises(ValueError, match=r"\[L, 3\]"):
        tm_align(np.zeros((5, 4)), a)


def test_self_consistency_on_moved_copy(small_chains: list) -> None:
    rng = np.random.default_rng(1)
    c = small_chains[1]
    rot, shift = _random_rigid(rng)
    moved = (c.atoms.astype(np.float64) @ rot.T + shift).astype(np.float32)
    noisy = c.atoms + rng.normal(scale=3.0, size=c.atoms.shape).astype(np.float32)
    folded = [
        FoldedStructure(c.sequence, a, np.full(c.length, 80.0, np.float32), 0.7) for a in (noisy, moved)
    ]
    per_seq = self_consistency(c.atoms[:, 1], folded)
    assert per_seq[1]["sc_rmsd"] < 1e-4  # rigid copy: zero after Kabsch (true RMS)
    assert per_seq[1]["sc_tm"] == pytest.approx(1.0, abs=1e-5)
    assert per_seq[0]["sc_rmsd"] == pytest.approx(3.0 * np.sqrt(3), rel=0.15)  # isotropic 3 A noise
    s = summarize_designs(per_seq, designable_rmsd=2.0)
    assert s["designable"] and s["best_seq_idx"] == 1 and s["sc_rmsd"] == per_seq[1]["sc_rmsd"]
    assert s["sc_tm"] == pytest.approx(1.0, abs=1e-5) and s["mean_plddt"] == pytest.approx(80.0)
    assert not summarize_designs(per_seq[:1], designable_rmsd=2.0)["designable"]
    # masked residues are ignored
    bad = moved.copy()
    bad[:5, 1] += 50.0
    mask = np.ones(c.length, bool)
    mask[:5] = False
    assert sc_rmsd(c.atoms[:, 1], bad[:, 1], mask) < 1e-4
    assert sc_rmsd(c.atoms[:, 1], bad[:, 1]) > 1.0


def test_backbone_metrics_on_real_chain(small_chains: list) -> None:
    c = small_chains[0]  # SH3 domain: mostly strands
    m = backbone_metrics(c.atoms[None], c.atom_mask[None], [c.sequence])[0]
    assert len(m["secondary_structure"]) == c.length
    assert m["helix_frac"] + m["strand_frac"] + m["coil_frac"] == pytest.approx(1.0)
    assert m["strand_frac"] > 0.3
    assert 9 < m["rg"] < 13
    assert m["ca_ca_deviation"] < 0.1 and m["clashes"] == 0
    assert m["length"] == c.atom_mask[:, 1].sum() and 3.7 < m["ca_ca_mean"] < 4.0
    assert m["rg_ratio"] == pytest.approx(m["rg"] / folded_rg(m["length"]))


def test_backbone_metrics_batch_with_padding_matches_single_chains(small_chains: list) -> None:
    """A padded batch (residue mask [B, L] or atom mask [B, L, 4]) gives each chain's own row; the report's keys
    come first, in the order of flowbb.geometry.report."""
    n = max(c.length for c in small_chains)
    atoms = np.zeros((len(small_chains), n, 4, 3), np.float32)
    atom_mask = np.zeros((len(small_chains), n, 4), bool)
    for b, c in enumerate(small_chains):
        atoms[b, : c.length], atom_mask[b, : c.length] = c.atoms, c.atom_mask
    rows = backbone_metrics(torch.as_tensor(atoms), torch.as_tensor(atom_mask))
    for row, c in zip(rows, small_chains, strict=True):
        single = backbone_metrics(c.atoms[None], c.atom_mask[None])[0]
        assert row.pop("secondary_structure")[: c.length] == single.pop("secondary_structure")
        assert row == pytest.approx(single)
        assert list(row)[:7] == list(PROTEIN_TRACE.report_keys())
    full = atom_mask.all(-1)
    by_residue = backbone_metrics(atoms * full[..., None, None], full)
    assert by_residue[0]["helix_frac"] == pytest.approx(rows[0]["helix_frac"])
    with pytest.raises(ValueError, match=r"\[B, L, 4, 3\]"):
        backbone_metrics(atoms[0], atom_mask[0])
    with pytest.raises(ValueError, match="2 sequences for 3 chains"):
        backbone_metrics(atoms, atom_mask, ["A", "B"])


def test_single_linkage_clusters() -> None:
    tm = np.eye(5)
    tm[0, 1] = tm[1, 0] = 0.6  # 0-1 linked
    tm[1, 2] = tm[2, 1] = 0.55  # 1-2 linked: 0, 1, 2 one cluster by single linkage
    tm[3, 4] = tm[4, 3] = 0.49  # below threshold
    assert single_linkage_clusters(tm, 0.5).tolist() == [0, 0, 0, 1, 2]
    assert single_linkage_clusters(tm, 0.56).tolist() == [0, 0, 1, 2, 3]


def test_diversity_of_real_chains(small_chains: list) -> None:
    cas = [c.atoms[:, 1] for c in small_chains]
    cas.append(cas[0] + 5.0)  # a translated copy of the first: TM 1, same cluster
    tm = pairwise_tm(cas)
    np.testing.assert_allclose(tm, tm.T)
    assert tm[0, 3] == pytest.approx(1.0, abs=1e-6)
    d = diversity(cas, cluster_tm=0.5)
    assert d["n"] == 4 and d["num_pairs"] == 6 and d["num_clusters"] == 3
    assert d["mean_pairwise_tm"] == pytest.approx(tm[np.triu_indices(4, 1)].mean())
    assert np.isnan(diversity(cas[:1])["mean_pairwise_tm"]) and diversity([])["n"] == 0
