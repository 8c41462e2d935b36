"""Shared test set-up: two torch threads, paths to the shared real structures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(2)

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FLOWBB_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (read-only real structures); skips when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def ddg_files(shared_data: Path) -> list[Path]:
    """The 50 plain PDB files with full headers in ``../shared/data/pdb/ddg``."""
    return sorted((shared_data / "pdb" / "ddg").glob("*.pdb"))


@pytest.fixture(scope="session")
def db55_files(shared_data: Path) -> list[Path]:
    """The 542 gzipped PDB files of Docking Benchmark 5.5."""
    return sorted((shared_data / "pdb" / "db55").glob("*.pdb.gz"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``gpu``-marked tests cleanly when CUDA is not available."""
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
