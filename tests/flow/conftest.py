"""Flow-test fixtures: real backbones (N, CA, C, O) of protein chains from ``../shared/data/pdb/ddg``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from flow_testdata import read_chain_backbones


@pytest.fixture(scope="session")
def real_backbones(ddg_files: list[Path]) -> list[np.ndarray]:
    """Up to 8 real chain backbones ``[L_i, 4, 3]`` (Å, float64), one per file, lengths >= 30."""
    out: list[np.ndarray] = []
    for path in ddg_files:
        chains = read_chain_backbones(path)
        if chains:
            out.append(chains[0])
        if len(out) == 8:
            break
    if len(out) < 6:
        pytest.skip("not enough real chains in ../shared/data/pdb/ddg")
    return out
