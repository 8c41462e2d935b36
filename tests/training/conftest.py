"""Fixtures for the training tests: a small processed set built from ../shared/data."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from train_testdata import RNA_FILES

# 12 ddg files: 20 chains, 18 of 60-512 residues (T4 lysozyme, barnase, BPTI, ...)
SMALL_SET_FILES = 12


@pytest.fixture(scope="session")
def small_processed(tmp_path_factory: pytest.TempPathFactory, core_ddg_files: list[Path]) -> Path:
    """A processed store (``flowbb.data.preprocess``) of a few real ddg structures (the first 12 of ../shared/data, or
    the 7 bundled ones of tests/resources), built once per session."""
    from flowbb.data.preprocess import preprocess

    root = tmp_path_factory.mktemp("small_set")
    raw = root / "raw"
    raw.mkdir()
    for path in core_ddg_files[:SMALL_SET_FILES]:
        shutil.copy(path, raw / path.name)
    preprocess(raw, root / "processed", num_workers=0, progress=False)
    return root / "processed"


@pytest.fixture(scope="session")
def rna_processed(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    """A processed store of the ``RNA_FILES`` chains (train_testdata.py), built once per session."""
    from flowbb.data.preprocess import preprocess

    root = tmp_path_factory.mktemp("rna_set")
    (root / "raw").mkdir()
    for name in RNA_FILES:
        shutil.copy(shared_data / "rna" / name, root / "raw" / name)
    preprocess(root / "raw", root / "processed", num_workers=0, progress=False)
    return root / "processed"
