"""Novelty search: max TM to a reference set (folder of structures or processed store), length pre-filter."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from flowbb.eval.novelty import NoveltySearcher, ReferenceSet, load_reference


@pytest.fixture(scope="module")
def reference(small_chain_files: list[Path], tmp_path_factory: pytest.TempPathFactory) -> ReferenceSet:
    root = tmp_path_factory.mktemp("reference")
    for f in small_chain_files:
        shutil.copy(f, root / f.name)
    return load_reference(root, min_length=20, cache=root.parent / "cache.npz")


def test_reference_folder(reference: ReferenceSet, small_chains: list) -> None:
    assert reference.names == ["1BPI.pdb:A", "1CSP.pdb:A", "1SHG.pdb:A"]
    assert sorted(reference.lengths.tolist()) == sorted(int(c.atom_mask[:, 1].sum()) for c in small_chains)


def test_known_chain_is_found_with_tm_one(reference: ReferenceSet, small_chains: list) -> None:
    with NoveltySearcher(reference, num_workers=0, min_length_ratio=0.5, max_length_ratio=2.0) as s:
        hit = s.search(small_chains[2].atoms[:, 1] + 3.0)  # 1CSP, moved
    assert hit.match == "1CSP.pdb:A" and hit.max_tm == pytest.approx(1.0, abs=1e-6) and hit.num_compared == 3


def test_length_prefilter(reference: ReferenceSet, small_chains: list) -> None:
    s = NoveltySearcher(reference, num_workers=0, min_length_ratio=0.9, max_length_ratio=1.1)
    assert set(s.candidates(57).tolist()) == {0, 2}  # 58 and 57 residues, not 67
    fragment = small_chains[2].atoms[:20, 1]
    hit = s.search(fragment)  # nothing of 18-22 residues in the reference
    assert hit.num_compared == 0 and np.isnan(hit.max_tm) and hit.match == ""


def test_parallel_workers_match_serial(reference: ReferenceSet, small_chains: list) -> None:
    query = small_chains[0].atoms[:, 1]
    serial = NoveltySearcher(reference, num_workers=0).search(query)
    with NoveltySearcher(reference, num_workers=2) as par:
        parallel = par.search(query)
    assert parallel == serial


def test_cache_round_trip(reference: ReferenceSet, tmp_path: Path) -> None:
    reference.save(tmp_path / "c.npz", "sig")
    back = ReferenceSet.load_cache(tmp_path / "c.npz", "sig")
    assert back.names == reference.names
    np.testing.assert_array_equal(back.coords, reference.coords)
    assert ReferenceSet.load_cache(tmp_path / "c.npz", "other") is None


def test_missing_reference_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such folder"):
        load_reference(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no structure files"):
        load_reference(tmp_path)


def test_processed_store_reference(
    small_chain_files: list[Path], reference: ReferenceSet, tmp_path: Path
) -> None:
    """A processed dataset folder (the data pipeline's store) gives the same reference chains as the files."""
    from flowbb.data.preprocess import preprocess

    raw = tmp_path / "raw"
    raw.mkdir()
    for f in small_chain_files:
        shutil.copy(f, raw / f.name)
    preprocess(raw, tmp_path / "processed", num_workers=0, progress=False)
    ref = load_reference(tmp_path / "processed")
    assert ref.names == reference.names
    np.testing.assert_allclose(ref.coords, reference.coords, atol=1e-4)
