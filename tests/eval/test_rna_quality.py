"""lociPARSE pMoL of RNA backbones: a real chain scores as native-like, its C4' trace scrambled does not."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from flowbb.data.nucleic import read_rna_chains
from flowbb.eval.rna_quality import LociParseScorer, lociparse_available

pytestmark = pytest.mark.skipif(not lociparse_available(), reason="lociPARSE not installed (pip install --no-deps "
                                "lociparse)")


@pytest.fixture(scope="module")
def scorer() -> LociParseScorer:
    return LociParseScorer()


def test_real_chain_scores_high_and_distorted_low(shared_data: Path, scorer: LociParseScorer, tmp_path: Path) -> None:
    chain = read_rna_chains(shared_data / "rna" / "medium__1XJR__A.pdb.gz")[0]
    assert set(chain.sequence) <= set("ACGU")
    real = scorer.score_atoms(chain.atoms, chain.sequence, chain.atom_mask)
    # the file as deposited (all atoms) and our 12-atom rewrite read the same P, C4', N9/N1: same score
    raw = tmp_path / "1xjr.pdb"
    with gzip.open(shared_data / "rna" / "medium__1XJR__A.pdb.gz", "rt") as fh:
        raw.write_text(fh.read())
    assert scorer.score_file(raw) == pytest.approx(real, abs=0.02)
    assert real > 0.6  # measured 0.78
    # every nucleotide shifted 3 A at random: geometry broken, score falls
    rng = np.random.default_rng(0)
    shaken = chain.atoms + rng.normal(0.0, 3.0, (len(chain.atoms), 1, 3)).astype(np.float32)
    assert scorer.score_atoms(shaken, chain.sequence, chain.atom_mask) < real - 0.2


def test_bad_input_is_named(scorer: LociParseScorer) -> None:
    with pytest.raises(ValueError, match="sequence must be 3 letters"):
        scorer.score_atoms(np.zeros((3, 12, 3)), "AAX")
    with pytest.raises(ValueError, match=r"atoms must be \[L, 12, 3\]"):
        scorer.score_atoms(np.zeros((3, 4, 3)), "AAA")
