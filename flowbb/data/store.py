"""Processed store: ``metadata.parquet`` (one row per chain) + per-residue NumPy arrays with random access.

Layout of a processed folder::

    metadata.parquet      one row per chain; ``offset``/``length`` locate its residues in the arrays below
    atoms.npy             float32 [N, 4, 3]  N, CA, C, O in A (0 where missing), all chains concatenated
    atom_mask.npy         bool    [N, 4]
    residue_numbers.npy   int32   [N]       author residue numbers
    insertion_codes.npy   S1      [N]       insertion codes (b'' when none)
    residue_index.npy     int32   [N]       0-based, strictly increasing, gaps at missing residues / breaks

The arrays are opened memory-mapped, so reading one chain touches only its own bytes.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from flowbb.errors import UserError

METADATA = "metadata.parquet"
ARRAYS: dict[str, tuple[str, tuple[int, ...]]] = {
    "atoms": ("float32", (4, 3)),
    "atom_mask": ("bool", (4,)),
    "residue_numbers": ("int32", ()),
    "insertion_codes": ("S1", ()),
    "residue_index": ("int32", ()),
}


def is_complete(out_dir: str | Path) -> bool:
    """True when ``out_dir`` holds a finished store (metadata and every array)."""
    out_dir = Path(out_dir)
    return (out_dir / METADATA).is_file() and all((out_dir / f"{name}.npy").is_file() for name in ARRAYS)


class ArrayWriter:
    """Writes the per-residue arrays of a store of ``total`` residues, then publishes them atomically.

    Arrays are filled through memory maps of temporary files; :meth:`commit` renames them into place.
    """

    def __init__(self, out_dir: str | Path, total: int) -> None:
        self.out_dir = Path(out_dir)
        self.total = total
        self._tmp = {name: self.out_dir / f".{name}.npy.tmp" for name in ARRAYS}
        self.arrays = {
            name: np.lib.format.open_memmap(self._tmp[name], mode="w+", dtype=dtype, shape=(total, *shape))
            for name, (dtype, shape) in ARRAYS.items()
        }

    def write(self, offset: int, values: dict[str, np.ndarray]) -> None:
        """Copy one chain's arrays (each with leading dimension L) to rows ``offset:offset+L``."""
        for name, array in self.arrays.items():
            value = values[name]
            array[offset : offset + len(value)] = value

    def commit(self) -> None:
        for name, array in self.arrays.items():
            array.flush()
            del array
        self.arrays = {}
        for name, tmp in self._tmp.items():
            os.replace(tmp, self.out_dir / f"{name}.npy")


class DatasetError(UserError, ValueError):
    """A processed dataset that cannot be trained on (e.g. no chain passes the filters)."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """A folder that is not a complete processed dataset."""


def not_a_dataset_message(root: Path) -> str:
    """One line on why ``root`` is not a processed dataset, and what to run."""
    make = f"python scripts/preprocess.py raw_dir=<folder of PDB/mmCIF files> out_dir={root}"
    if not root.exists():
        return f"processed dataset {root} does not exist: create it with `{make}` (or train on the demo set: data=demo)"
    if not root.is_dir():
        return f"processed dataset {root} is a file, not a folder: set data.processed_dir to a preprocessed folder"
    if (root / "shards").is_dir():
        return (f"processed dataset {root} is incomplete (preprocessing did not finish, no {METADATA}): rerun the "
                f"preprocessing command with the same raw_dir and out_dir={root} to resume it")
    return (f"{root} is not a processed dataset (expected {METADATA} and {', '.join(n + '.npy' for n in ARRAYS)}): "
            f"create it with `{make}`")


class ProcessedStore:
    """Read access to a processed folder (see module docstring).

    Attributes:
        metadata: pandas DataFrame, one row per chain, index = row id 0..R-1.
    """

    def __init__(self, root: str | Path) -> None:
        import pandas as pd

        self.root = Path(root)
        if not is_complete(self.root):
            raise DatasetNotFoundError(not_a_dataset_message(self.root))
        self.metadata = pd.read_parquet(self.root / METADATA)
        self._arrays = {name: np.load(self.root / f"{name}.npy", mmap_mode="r") for name in ARRAYS}
        self._offset = self.metadata["offset"].to_numpy(np.int64)
        self._length = self.metadata["length"].to_numpy(np.int64)

    def __len__(self) -> int:
        return len(self.metadata)

    def chain(self, row: int) -> dict[str, np.ndarray]:
        """Arrays of one chain (copies): atoms [L,4,3] float32, atom_mask [L,4] bool, residue_numbers [L],
        insertion_codes [L] (S1), residue_index [L]."""
        start = int(self._offset[row])
        stop = start + int(self._length[row])
        return {name: np.array(array[start:stop]) for name, array in self._arrays.items()}
