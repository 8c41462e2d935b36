"""TM-score, diversity and novelty on RNA: TM-align (tmtools) on C4' traces of real chains of ../shared/data/rna,
and novelty against a processed RNA store (C4' traces read through the store)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from flowbb.data.nucleic import read_rna_chains
from flowbb.eval.diversity import pairwise_tm, single_linkage_clusters
from flowbb.eval.novelty import NoveltySearcher, load_reference_processed
from flowbb.eval.tm import tm_align, tm_score

FILES = ("medium__1XJR__A.pdb.gz", "medium__3D2V__A.pdb.gz", "grnade__RCSB__B.pdb.gz")


@pytest.fixture(scope="module")
def c4_traces(shared_data: Path) -> list[np.ndarray]:
    """C4' traces ``[L, 3]`` of the FILES chains."""
    out = []
    for name in FILES:
        chain = read_rna_chains(shared_data / "rna" / name)[0]
        out.append(chain.atoms[chain.atom_mask[:, 0], 0].astype(np.float64))
    return out


def _rotation(seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q * np.linalg.det(q)


def test_tmtools_scores_c4_traces(c4_traces: list[np.ndarray]) -> None:
    """A chain against itself moved: 1; with 0.5 Å noise: high; two different RNAs: low; sequences as labels."""
    x = c4_traces[0]
    rng = np.random.default_rng(0)
    assert tm_score(x @ _rotation(1).T + 7.0, x) == pytest.approx(1.0, abs=1e-6)
    assert tm_score(x + rng.normal(scale=0.5, size=x.shape), x) > 0.8
    assert tm_score(x, c4_traces[1]) < 0.5
    res = tm_align(x, x, seq_1="ACGU" * (len(x) // 4) + "ACGU"[: len(x) % 4], seq_2=None)
    assert res.tm_norm_1 == pytest.approx(1.0, abs=1e-6) and res.rmsd < 1e-3


def test_diversity_of_rna_traces(c4_traces: list[np.ndarray]) -> None:
    moved = c4_traces[0] @ _rotation(2).T
    tm = pairwise_tm([*c4_traces, moved])
    assert np.allclose(tm, tm.T) and tm[0, 3] == pytest.approx(1.0, abs=1e-6)
    assert (tm[np.triu_indices(3, 1)] < 0.5).all()
    assert single_linkage_clusters(tm, 0.5).tolist() == [0, 1, 2, 0]


def test_novelty_against_a_processed_rna_store(c4_traces: list[np.ndarray], shared_data: Path, tmp_path: Path) -> None:
    from flowbb.data.preprocess import preprocess

    (tmp_path / "raw").mkdir()
    for name in FILES:
        shutil.copy(shared_data / "rna" / name, tmp_path / "raw" / name)
    preprocess(tmp_path / "raw", tmp_path / "processed", num_workers=0, progress=False)
    ref = load_reference_processed(tmp_path / "processed", molecule="rna")
    assert len(ref) == 3
    for i, name in enumerate(ref.names):
        trace = c4_traces[FILES.index(name.split(":")[0])]
        assert np.allclose(ref.ca(i), trace, atol=1e-3)  # C4', not the second stored atom (O4')
    with NoveltySearcher(ref, num_workers=0, min_length_ratio=0.5, max_length_ratio=2.0) as searcher:
        hit = searcher.search(c4_traces[1] + 3.0)
    assert hit.match.startswith(FILES[1]) and hit.max_tm == pytest.approx(1.0, abs=1e-6)
