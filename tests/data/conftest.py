"""Fixtures for the data tests: small copies of ../shared/data in temporary folders (never written to)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


def copy_files(files: list[Path], dest: Path) -> Path:
    """Copy ``files`` into ``dest`` (created); returns ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    for f in files:
        shutil.copy2(f, dest / f.name)
    return dest


@pytest.fixture(scope="session")
def copy_to():
    """The :func:`copy_files` helper."""
    return copy_files


@pytest.fixture(scope="session")
def small_raw(tmp_path_factory, ddg_files, db55_files) -> Path:
    """Raw folder with 4 ddg files (headers, HETATM, altlocs) and 10 db55 files (gzip, multi-chain)."""
    root = tmp_path_factory.mktemp("raw")
    copy_files(ddg_files[:4], root / "ddg")
    copy_files(db55_files[:10], root / "db55")
    return root


@pytest.fixture(scope="session")
def small_store(tmp_path_factory, small_raw) -> Path:
    """``small_raw`` preprocessed in this process."""
    from flowbb.data.preprocess import preprocess

    out = tmp_path_factory.mktemp("processed")
    preprocess(small_raw, out, num_workers=0, progress=False)
    return out
