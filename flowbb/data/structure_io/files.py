"""Structure file names, decompression and text decoding, and the error every structure reader raises.

- formats by file name: ``.pdb``/``.ent`` (PDB), ``.cif``/``.mmcif`` (mmCIF), ``.bcif`` (BinaryCIF), each
  optionally compressed as ``.gz`` or ``.bz2`` (``pdb1abc.ent.gz`` and ``1abc.cif.gz`` mirror names work);
- problems raise :class:`StructureReadError` with the file and one of the reasons in :data:`REASONS` (stable
  strings: the preprocessing summary counts them).

Used by the protein reader (:mod:`flowbb.data.structure_io.read`) and the RNA reader (:mod:`flowbb.data.nucleic`).
"""

from __future__ import annotations

import bz2
import gzip
import zlib
from pathlib import Path

# reasons a file cannot be used (stable strings: the preprocessing summary counts them)
EMPTY = "empty file"
TRUNCATED_GZIP = "truncated gzip"
CORRUPT_COMPRESSED = "corrupt compressed file"
NOT_A_STRUCTURE = "not a structure"
UNSUPPORTED_FORMAT = "unsupported file extension"
NO_PROTEIN = "no protein chain"
CA_ONLY = "CA-only"
REASONS = (
    EMPTY,
    TRUNCATED_GZIP,
    CORRUPT_COMPRESSED,
    NOT_A_STRUCTURE,
    UNSUPPORTED_FORMAT,
    NO_PROTEIN,
    CA_ONLY,
)

_FORMATS = {".pdb": "pdb", ".ent": "pdb", ".cif": "cif", ".mmcif": "cif", ".bcif": "bcif"}
_COMPRESSIONS = (".gz", ".bz2")


class StructureReadError(Exception):
    """A structure file that cannot be used; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, path: str | Path, reason: str, detail: str = "") -> None:
        self.path = str(path)
        self.reason = reason
        self.detail = detail
        super().__init__(f"{path}: {reason}" + (f" ({detail})" if detail else ""))


def split_format(path: str | Path) -> tuple[str, str | None]:
    """(format 'pdb'|'cif'|'bcif', compression '.gz'|'.bz2'|None) from a file name; raises on others."""
    name = Path(path).name.lower()
    compression = next((c for c in _COMPRESSIONS if name.endswith(c)), None)
    if compression:
        name = name[: -len(compression)]
    suffix = Path(name).suffix
    if suffix not in _FORMATS:
        raise StructureReadError(path, UNSUPPORTED_FORMAT, suffix or "no extension")
    return _FORMATS[suffix], compression


def is_structure_file(path: str | Path) -> bool:
    """True when the file name has a supported structure extension (optionally compressed)."""
    try:
        split_format(path)
    except StructureReadError:
        return False
    return True


def read_payload(path: Path, compression: str | None) -> bytes:
    """The file's bytes, decompressed (``compression`` from :func:`split_format`); raises on empty, truncated or
    corrupt files."""
    data = path.read_bytes()
    if not data:
        raise StructureReadError(path, EMPTY)
    if compression == ".gz":
        try:
            data = gzip.decompress(data)
        except EOFError as exc:
            raise StructureReadError(path, TRUNCATED_GZIP, str(exc)) from None
        except (OSError, zlib.error) as exc:
            raise StructureReadError(path, CORRUPT_COMPRESSED, str(exc)) from None
    elif compression == ".bz2":
        try:
            data = bz2.decompress(data)
        except (EOFError, OSError, ValueError) as exc:
            raise StructureReadError(path, CORRUPT_COMPRESSED, str(exc)) from None
    if not data.strip():
        raise StructureReadError(path, EMPTY, "no content after decompression")
    return data


def decode_text(path: Path, data: bytes) -> str:
    """``data`` as text (UTF-8, else Latin-1 for text with a few odd bytes); binary content raises
    :data:`NOT_A_STRUCTURE`."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        if data.count(b"\x00") or sum(b > 127 for b in data[:4096]) > 40:
            raise StructureReadError(path, NOT_A_STRUCTURE, "binary content") from None
        return data.decode("latin-1")
