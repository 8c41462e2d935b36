"""Fixtures for the training tests: a small processed set built from ../shared/data."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

# 12 ddg files: 20 chains, 18 of 60-512 residues (T4 lysozyme, barnase, BPTI, ...)
SMALL_SET_FILES = 12


@pytest.fixture(scope="session")
def small_processed(tmp_path_factory: pytest.TempPathFactory, ddg_files: list[Path]) -> Path:
    """A processed store (``flowbb.data.preprocess``) of a few real ddg structures, built once per session."""
    from flowbb.data.preprocess import preprocess

    root = tmp_path_factory.mktemp("small_set")
    raw = root / "raw"
    raw.mkdir()
    for path in ddg_files[:SMALL_SET_FILES]:
        shutil.copy(path, raw / path.name)
    preprocess(raw, root / "processed", num_workers=0, progress=False)
    return root / "processed"
