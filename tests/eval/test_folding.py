"""ESMFold wrapper: tiny random model, token-budget batches, local loading, the missing-weights error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from flowbb.data.packing import BatchBudget, pack_batches
from flowbb.eval.folding import (
    ESMFoldPredictor,
    FoldingWeightsNotFound,
    load_esmfold,
    predicted_tm,
    tiny_random_esmfold,
)

SEQS = ["MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ", "ACDEFGHIKLMNPQRSTVWY", "MKV" * 9, "GSHMLE" * 7]


@pytest.fixture(scope="module")
def tiny() -> ESMFoldPredictor:
    return tiny_random_esmfold(seed=0, device="cpu")


def test_folding_batches_respect_budget_and_cover_all() -> None:
    """ESMFold's batches (flowbb.data.packing.pack_batches under a token and batch-size budget)."""
    rng = np.random.default_rng(0)
    lengths = rng.integers(20, 400, size=200).tolist()
    for max_tokens, max_bs in ((1000, None), (2048, 4), (100, 8)):
        batches = pack_batches(lengths, BatchBudget(max_tokens=max_tokens, max_batch_size=max_bs))
        flat = sorted(i for b in batches for i in b)
        assert flat == list(range(len(lengths)))
        for b in batches:
            longest = max(lengths[i] for i in b)
            assert len(b) == 1 or len(b) * longest <= max_tokens
            if max_bs:
                assert len(b) <= max_bs


def test_tiny_model_outputs(tiny: ESMFoldPredictor) -> None:
    assert tiny.meaningless and tiny.name == "tiny_random"
    out = tiny.fold(SEQS, with_pdb=True)
    assert [o.sequence for o in out] == SEQS  # input order
    for o, s in zip(out, SEQS):
        assert o.atoms.shape == (len(s), 4, 3) and o.atoms.dtype == np.float32
        assert np.isfinite(o.atoms).all()
        assert o.plddt.shape == (len(s),) and ((o.plddt >= 0) & (o.plddt <= 100)).all()
        assert 0 <= o.ptm <= 1
        assert o.pdb_string.startswith("PARENT") or "ATOM" in o.pdb_string
    # same seed, same model and structures (bit for bit at the same batch; a batch with longer chains pads this one,
    # which changes float rounding only: 5e-7 Å with transformers 5.24)
    again = tiny_random_esmfold(seed=0, device="cpu").fold(SEQS[:1])
    np.testing.assert_array_equal(again[0].atoms, tiny.fold(SEQS[:1])[0].atoms)
    np.testing.assert_allclose(again[0].atoms, out[0].atoms, rtol=0, atol=1e-4)


def test_explicit_recycles() -> None:
    base = tiny_random_esmfold(seed=2, device="cpu")
    more = tiny_random_esmfold(seed=2, device="cpu", num_recycles=2)
    a, b = base.fold(SEQS[:1])[0], more.fold(SEQS[:1])[0]
    assert b.atoms.shape == a.atoms.shape and np.isfinite(b.atoms).all()
    assert not np.allclose(a.atoms, b.atoms)  # recycling changes the prediction


def test_padding_in_mixed_length_batch_does_not_change_results(tiny: ESMFoldPredictor) -> None:
    batched = tiny.fold(SEQS)
    single = [tiny.fold([s])[0] for s in SEQS]
    for a, b in zip(batched, single):
        np.testing.assert_allclose(a.atoms, b.atoms, atol=2e-3)
        np.testing.assert_allclose(a.plddt, b.plddt, atol=1e-2)


def test_chunked_trunk_gives_same_structure() -> None:
    plain = tiny_random_esmfold(seed=1, device="cpu", chunk_size=None)
    chunked = tiny_random_esmfold(seed=1, device="cpu", chunk_size=8, chunk_min_length=0)
    a, b = plain.fold(SEQS[:2]), chunked.fold(SEQS[:2])
    for x, y in zip(a, b):
        np.testing.assert_allclose(x.atoms, y.atoms, atol=1e-3)


def test_predicted_tm_range() -> None:
    logits = torch.zeros(30, 30, 64)
    uniform = predicted_tm(logits)
    confident = torch.full((30, 30, 64), -30.0)
    confident[..., 0] = 30.0  # all mass in the smallest error bin
    assert 0 < uniform < predicted_tm(confident) <= 1


def test_loads_a_local_folder(tmp_path: Path, tiny: ESMFoldPredictor) -> None:
    """The real loading path (from_pretrained on a local folder) on a saved tiny model."""
    tiny.model.save_pretrained(tmp_path / "esmfold_tiny")
    loaded = load_esmfold(model_path=str(tmp_path / "esmfold_tiny"), device="cpu", lm_dtype="float32")
    assert not loaded.meaningless and loaded.name == "esmfold_tiny"
    np.testing.assert_allclose(loaded.fold(SEQS[:1])[0].atoms, tiny.fold(SEQS[:1])[0].atoms, atol=1e-5)


def test_missing_weights_give_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(FoldingWeightsNotFound, match="huggingface-cli download facebook/esmfold_v1") as err:
        load_esmfold(model_path=str(tmp_path / "nowhere"))
    assert "folding.model_path" in str(err.value) and "tiny_random" in str(err.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FoldingWeightsNotFound, match="no config.json"):
        load_esmfold(model_path=str(tmp_path / "empty"))
    # not in the cache; offline, and even with allow_download the offline flag wins (nothing is downloaded)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FoldingWeightsNotFound, match="Hugging Face cache"):
        load_esmfold(hub_id="flowbb-tests/no-such-model", allow_download=True)
