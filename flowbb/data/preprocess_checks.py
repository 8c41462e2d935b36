"""Checks that run before preprocessing writes anything: option types and values, paths, and which ``raw_dir`` an
existing ``out_dir`` was made from.

Each failure is a :class:`flowbb.data.preprocess.PreprocessError` (a :class:`flowbb.errors.UserError`) with one line
naming the option, the value and the fix. ``out_dir/source.json`` records the ``raw_dir`` a processed folder was made
from, so that pointing an existing ``out_dir`` at another ``raw_dir`` is refused unless ``overwrite=true``.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

from flowbb.data.secondary_structure import dssp_method as check_dssp_method
from flowbb.errors import UserError

SOURCE_FILE = "source.json"
STRUCTURE_SUFFIXES = ".pdb, .ent, .cif, .mmcif, .bcif (optionally .gz or .bz2)"


class PreprocessError(UserError):
    """A problem with the preprocessing call itself (an option, a path, an ``out_dir`` of another ``raw_dir``)."""


def whole_number(name: str, value: Any, minimum: int) -> int:
    """``value`` as an int >= ``minimum`` (ints, or strings of digits); else a :class:`PreprocessError`."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        number = None
    else:
        try:
            number = int(value)
        except ValueError:
            number = None
    if number is None or number < minimum:
        raise PreprocessError(f"{name}={value}: expected a whole number >= {minimum} (e.g. {name}={max(minimum, 2)})")
    return number


def check_options(num_workers: Any, min_length: Any, dssp_method: Any, chunksize: Any) -> tuple[int, int, str, int]:
    """Validated ``(num_workers, min_length, dssp_method, chunksize)``; the former DSSP method name ``flowbb``
    becomes ``kabsch_sander`` with a ``FutureWarning``
    (:func:`flowbb.data.secondary_structure.dssp_method`).

    Raises:
        PreprocessError: a value of the wrong type or out of range.
    """
    workers = whole_number("num_workers", num_workers, 0)
    length = whole_number("min_length", min_length, 1)
    chunk = whole_number("chunksize", chunksize, 1)
    try:
        method = check_dssp_method(str(dssp_method))
    except ValueError as exc:
        raise PreprocessError(str(exc)) from None
    return workers, length, method, chunk


def check_paths(raw_dir: Path, out_dir: Path) -> None:
    """``raw_dir`` must be an existing folder; ``out_dir`` a folder or a path that can become one.

    Raises:
        PreprocessError: naming the path and what is wrong with it.
    """
    if not raw_dir.exists():
        raise PreprocessError(f"raw_dir {str(raw_dir)!r} does not exist (resolved: {raw_dir.resolve()})")
    if not raw_dir.is_dir():
        raise PreprocessError(f"raw_dir {str(raw_dir)!r} is not a folder")
    if out_dir.exists() and not out_dir.is_dir():
        raise PreprocessError(f"out_dir {str(out_dir)!r} is a file, not a folder: give a folder path (it is created)")
    parent = out_dir
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise PreprocessError(f"out_dir {str(out_dir)!r} cannot be created: {str(parent)!r} is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PreprocessError(f"out_dir {str(out_dir)!r} cannot be written (no permission in {str(parent)!r}): "
                              "choose another out_dir")
    if out_dir.resolve() == raw_dir.resolve():
        raise PreprocessError(f"out_dir is raw_dir ({str(raw_dir)!r}); preprocessing never writes into its input: "
                              "choose another out_dir")


def no_structure_files_message(raw_dir: Path, num_other: int) -> str:
    """The one-line error for a ``raw_dir`` without structure files."""
    other = f" ({num_other} other file(s) ignored)" if num_other else " (it is empty)"
    return (f"raw_dir {str(raw_dir)!r} holds no structure files{other}: expected {STRUCTURE_SUFFIXES}, "
            "searched recursively")


def recorded_source(out_dir: Path) -> str | None:
    """The resolved ``raw_dir`` an ``out_dir`` was made from (``None``: no record, e.g. a new folder)."""
    try:
        return str(json.loads((out_dir / SOURCE_FILE).read_text())["raw_dir"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _listed_files(out_dir: Path) -> set[str] | None:
    """Source files named in ``out_dir/files.csv`` (``None`` when there is none)."""
    try:
        with open(out_dir / "files.csv", newline="") as handle:
            return {row["source_file"] for row in csv.DictReader(handle)}
    except (OSError, KeyError, csv.Error):
        return None


def check_source(raw_dir: Path, out_dir: Path, structure_files: list[str], overwrite: bool) -> None:
    """Refuse an ``out_dir`` made from another ``raw_dir`` unless ``overwrite``.

    The ``raw_dir`` is the one recorded in ``out_dir/source.json``; a folder made before that record existed counts
    as another ``raw_dir``'s when its ``files.csv`` names none of the current ``structure_files``.

    Raises:
        PreprocessError: naming both folders and the ways out (another ``out_dir``, ``overwrite=true``).
    """
    if overwrite:
        return
    recorded = recorded_source(out_dir)
    here = str(raw_dir.resolve())
    if recorded is not None and recorded != here:
        raise PreprocessError(f"out_dir {str(out_dir)!r} holds a dataset made from raw_dir {recorded!r}, not {here!r}: "
                              "choose another out_dir, or pass overwrite=true to replace that dataset")
    listed = _listed_files(out_dir) if recorded is None else None
    if listed and not listed.intersection(structure_files):
        raise PreprocessError(f"out_dir {str(out_dir)!r} holds a dataset of {len(listed)} other file(s), none of them "
                              f"in raw_dir {here!r}: choose another out_dir, or pass overwrite=true to replace it")


def record_source(raw_dir: Path, out_dir: Path) -> None:
    """Write ``out_dir/source.json`` (atomically) naming the resolved ``raw_dir``."""
    tmp = out_dir / f".{SOURCE_FILE}.tmp"
    tmp.write_text(json.dumps({"raw_dir": str(raw_dir.resolve())}, indent=2) + "\n")
    os.replace(tmp, out_dir / SOURCE_FILE)
