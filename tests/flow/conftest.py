"""Flow-test fixtures: real backbones (N, CA, C, O) of protein chains from ``../shared/data/pdb/ddg`` (or the
bundled few: ``core_ddg_files``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from flow_testdata import read_chain_backbones


@pytest.fixture(scope="session")
def real_backbones(core_ddg_files: list[Path]) -> list[np.ndarray]:
    """Up to 8 real chain backbones ``[L_i, 4, 3]`` (Å, float64), one per file, lengths >= 30."""
    out: list[np.ndarray] = []
    for path in core_ddg_files:
        chains = read_chain_backbones(path)
        if chains:
            out.append(chains[0])
        if len(out) == 8:
            break
    if len(out) < 6:
        pytest.skip(f"not enough real chains among {len(core_ddg_files)} ddg files")
    return out
