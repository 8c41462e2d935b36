"""ProteinMPNN designer: real weights, native-sequence recovery, seeding, no input echo."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flowbb.eval.inverse_folding import (
    ProteinMPNNDesigner,
    has_native_sequence,
    proteinmpnn_weights_path,
    sequence_recovery,
)


@pytest.fixture(scope="module")
def designs(designer: ProteinMPNNDesigner, small_chains: list) -> list:
    """8 designs at T=0.1 for each small real chain (computed once)."""
    return [
        designer.design(c.atoms, c.atom_mask, c.residue_index, native_sequence=c.sequence, seed=i)
        for i, c in enumerate(small_chains)
    ]


def test_real_weights_v48_020_by_default(designer: ProteinMPNNDesigner) -> None:
    assert designer.weights_path == proteinmpnn_weights_path("v_48_020")
    assert designer.weights_path.parent.name == "vanilla_model_weights"
    assert designer.num_edges == 48 and designer.num_seqs == 8 and designer.temperature == 0.1


def test_native_sequence_recovery_above_0_3(designs: list, small_chains: list) -> None:
    recoveries = []
    for chain, ds in zip(small_chains, designs):
        assert len(ds) == 8  # eight designs, the input sequence is not among them
        for d in ds:
            assert len(d.sequence) == chain.length
            assert set(d.sequence) <= set("ACDEFGHIKLMNPQRSTVWY")  # X omitted
            assert d.recovery == pytest.approx(
                sequence_recovery(d.sequence, chain.sequence, chain.atom_mask.all(-1))
            )
            recoveries.append(d.recovery)
    mean = float(np.mean(recoveries))
    assert mean > 0.3, f"mean native-sequence recovery {mean:.3f}"
    assert max(recoveries) < 0.95  # designs, not the input echoed back


def test_scores_are_mean_nll(designs: list) -> None:
    scores = np.array([d.score for ds in designs for d in ds])
    assert np.isfinite(scores).all()
    # at T=0.1 designs are likely under the model: mean NLL well below uniform (log 20 ~ 3.0)
    assert 0 < scores.mean() < 1.5


def test_seeded_and_leaves_global_rng_alone(designer: ProteinMPNNDesigner, small_chains: list) -> None:
    c = small_chains[0]
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a = designer.design(c.atoms, c.atom_mask, native_sequence=c.sequence, seed=7, num_seqs=2)
    after = torch.rand(3)
    torch.testing.assert_close(after, expected_next)  # the caller's RNG stream is untouched
    b = designer.design(c.atoms, c.atom_mask, native_sequence=c.sequence, seed=7, num_seqs=2)
    other = designer.design(c.atoms, c.atom_mask, native_sequence=c.sequence, seed=8, num_seqs=2)
    assert [d.sequence for d in a] == [d.sequence for d in b]
    assert [d.score for d in a] == [d.score for d in b]
    assert [d.sequence for d in a] != [d.sequence for d in other]


def test_ca_only_model(small_chains: list) -> None:
    ca_designer = ProteinMPNNDesigner(ca_only=True, num_seqs=2, device="cpu")
    assert ca_designer.weights_path.parent.name == "ca_model_weights"
    c = small_chains[1]
    atoms = c.atoms.copy()
    atoms[:, [0, 2, 3]] = 0.0  # only CA is read
    ds = ca_designer.design(atoms, native_sequence=c.sequence, seed=0)
    assert len(ds) == 2 and all(len(d.sequence) == c.length for d in ds)
    assert np.mean([d.recovery for d in ds]) > 0.2


def test_poly_gly_backbone_has_no_recovery(designer: ProteinMPNNDesigner, small_chains: list) -> None:
    c = small_chains[0]
    assert not has_native_sequence("G" * c.length)
    ds = designer.design(c.atoms, native_sequence="G" * c.length, seed=0, num_seqs=1)
    assert ds[0].recovery is None


def test_bad_input_is_a_clear_error(designer: ProteinMPNNDesigner) -> None:
    with pytest.raises(ValueError, match=r"\[L, 4, 3\]"):
        designer.design(np.zeros((10, 3, 3)))
    with pytest.raises(ValueError, match="model_name"):
        proteinmpnn_weights_path("v_48_999")
    with pytest.raises(ValueError, match="soluble"):
        proteinmpnn_weights_path("v_48_020", ca_only=True, soluble=True)
