"""Processed store: ``metadata.parquet`` (one row per chain) + per-residue NumPy arrays with random access.

Layout of a processed folder::

    metadata.parquet      one row per chain, the columns of :data:`METADATA_COLUMNS`; ``molecule`` (protein | rna)
                          names its arrays, ``offset``/``length`` locate its residues in them
    atoms.npy             float32 [N, 4, 3]  protein: N, CA, C, O in A (0 where missing), chains concatenated
    atom_mask.npy         bool    [N, 4]
    residue_numbers.npy   int32   [N]       author residue numbers
    insertion_codes.npy   S1      [N]       insertion codes (b'' when none)
    residue_index.npy     int32   [N]       0-based, strictly increasing, gaps at missing residues / breaks
    rna_atoms.npy         float32 [M, 12, 3] RNA: the 12 atoms of flowbb.data.nucleic.RNA_ATOMS
    rna_atom_mask.npy     bool    [M, 12]
    rna_residue_numbers.npy, rna_insertion_codes.npy, rna_residue_index.npy   as above, per nucleotide

Each molecule type has its own arrays (:data:`LAYOUTS`: a file-name prefix and the atoms per residue), so protein
arrays are exactly what they were before RNA existed; a folder written before the ``molecule`` column existed
reads as protein only (no ``rna_*`` files needed). In both layouts the frame atoms come first (protein N, CA, C;
RNA C4', O4', C3'): a residue has a frame when its first three atoms are present.
The arrays are opened memory-mapped, so reading one chain touches only its own bytes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flowbb.data.nucleic import RNA_ATOMS
from flowbb.data.residues import BACKBONE_ATOMS
from flowbb.errors import UserError
from flowbb.molecules import MOLECULE_NAMES

METADATA = "metadata.parquet"
#: the molecule type of chains in folders written before the ``molecule`` column existed
DEFAULT_MOLECULE = "protein"


@dataclass(frozen=True)
class Column:
    """One column of ``metadata.parquet``.

    Attributes:
        name: column name.
        dtype: how it is written: 'int64', 'float64' (NaN: unknown), 'bool', 'object' (str, None: unknown; cast so
            that None stays None), or 'str' (text that is always present; left to pandas' inferred string dtype).
        meaning: what it holds.
    """

    name: str
    dtype: str
    meaning: str


#: the columns of ``metadata.parquet``, in file order: the one table that preprocessing
#: (:mod:`flowbb.data.chain_records`, :func:`flowbb.data.shards.consolidate`), this reader and the tests use
METADATA_COLUMNS: tuple[Column, ...] = (
    Column("row", "int64", "row id 0..R-1 (the table's order: source file, then chain order in the file)"),
    Column("chain_id", "str", "author chain id ('' when the file has none)"),
    Column("source_file", "str", "path of the structure file relative to raw_dir (POSIX)"),
    Column("pdb_id", "object", "PDB id from the file's header, None when it has none"),
    Column("entity_id", "object", "mmCIF entity id / PDB COMPND MOL_ID of a protein chain, else None"),
    Column("length", "int64", "residues stored, L: observed amino acids / nucleotides"),
    Column("modeled_length", "int64", "residues with a frame: protein N, CA, C; RNA C4', O4', C3'"),
    Column("sequence", "str", "one-letter sequence of length L (parents of modified residues; X / N unknown)"),
    Column("resolution", "float64", "resolution (A) from the header, NaN when unknown"),
    Column("method", "object", "experimental method(s) from the header, '; '-joined, None when unknown"),
    Column("deposition_date", "object", "deposition date YYYY-MM-DD from the header, None when unknown"),
    Column("oligomeric_detail", "object", "biological unit, e.g. 'monomeric' (PDB REMARK 350, mmCIF), else None"),
    Column("num_chains_in_file", "int64", "chains of the same molecule type in the file, of any length"),
    Column("helix_frac", "float64", "DSSP helix fraction over modeled residues (NaN for RNA)"),
    Column("strand_frac", "float64", "DSSP strand fraction over modeled residues (NaN for RNA)"),
    Column("coil_frac", "float64", "DSSP coil fraction over modeled residues (NaN for RNA)"),
    Column("secondary_structure", "str", "3-state DSSP string of length L over H, E, - ('' for RNA)"),
    Column("radius_of_gyration", "float64", "radius of gyration (A) of the frame-origin atoms present (CA, C4')"),
    Column("num_chain_breaks", "int64", "consecutive residues that are not bonded (C-N / O3'-P > 2 A or missing)"),
    Column("first_residue_number", "int64", "author number of the first residue"),
    Column("last_residue_number", "int64", "author number of the last residue"),
    Column("has_insertion_codes", "bool", "some residue has an insertion code"),
    Column("molecule", "object", "'protein' or 'rna': whose arrays hold the residues (absent before RNA: protein)"),
    Column("offset", "int64", "index of the chain's first residue in its molecule type's arrays"),
)
#: columns the pipeline adds when it writes the table; every other column is a field of each chain's record
STORE_COLUMNS = ("row", "offset")
#: the fields of one chain's record (:mod:`flowbb.data.chain_records`), in table order
RECORD_COLUMNS: tuple[str, ...] = tuple(c.name for c in METADATA_COLUMNS if c.name not in STORE_COLUMNS)
#: columns a processed folder cannot be read without
REQUIRED_COLUMNS = ("offset", "length")


@dataclass(frozen=True)
class AtomLayout:
    """How one molecule type's residues are stored.

    Attributes:
        prefix: file-name prefix of its arrays ('' for protein: the files of stores written before RNA).
        atom_names: atoms per residue, frame atoms first.
        origin: index of the frame-origin atom (CA, C4'): chains are centred on these atoms' centroid.
    """

    prefix: str
    atom_names: tuple[str, ...]
    origin: int

    @property
    def arrays(self) -> dict[str, tuple[str, tuple[int, ...]]]:
        """Array name -> (dtype, shape per residue)."""
        a = len(self.atom_names)
        return {
            "atoms": ("float32", (a, 3)),
            "atom_mask": ("bool", (a,)),
            "residue_numbers": ("int32", ()),
            "insertion_codes": ("S1", ()),
            "residue_index": ("int32", ()),
        }

    def file(self, name: str) -> str:
        """File name of array ``name``."""
        return f"{self.prefix}{name}.npy"


LAYOUTS: dict[str, AtomLayout] = {
    "protein": AtomLayout("", tuple(BACKBONE_ATOMS), origin=1),
    "rna": AtomLayout("rna_", tuple(RNA_ATOMS), origin=0),
}
#: molecule type names in code order (flowbb.molecules is their home)
MOLECULES = MOLECULE_NAMES
#: the protein arrays (the layout of every store)
ARRAYS: dict[str, tuple[str, tuple[int, ...]]] = LAYOUTS["protein"].arrays


def is_complete(out_dir: str | Path) -> bool:
    """True when ``out_dir`` holds a finished store (metadata and every protein array; the ``rna_*`` arrays are
    written beside them by every run that knows RNA and are checked when a chain needs them)."""
    out_dir = Path(out_dir)
    return (out_dir / METADATA).is_file() and all((out_dir / f"{name}.npy").is_file() for name in ARRAYS)


class ArrayWriter:
    """Writes the per-residue arrays of one molecule type (``total`` residues), then publishes them atomically.

    Arrays are filled through memory maps of temporary files; :meth:`commit` renames them into place.
    """

    def __init__(self, out_dir: str | Path, total: int, molecule: str = DEFAULT_MOLECULE) -> None:
        self.out_dir = Path(out_dir)
        self.total = total
        self.layout = LAYOUTS[molecule]
        spec = self.layout.arrays
        self._tmp = {name: self.out_dir / f".{self.layout.file(name)}.tmp" for name in spec}
        self.arrays = {
            name: np.lib.format.open_memmap(self._tmp[name], mode="w+", dtype=dtype, shape=(total, *shape))
            for name, (dtype, shape) in spec.items()
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
            os.replace(tmp, self.out_dir / self.layout.file(name))


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
        missing = [name for name in REQUIRED_COLUMNS if name not in self.metadata.columns]
        if missing:
            raise DatasetError(f"{self.root / METADATA} has no column {', '.join(missing)}: it was not written by "
                               "flowbb's preprocessing; preprocess the raw files again")
        if "molecule" not in self.metadata.columns:  # written before RNA: proteins only
            self.metadata["molecule"] = DEFAULT_MOLECULE
        unknown = sorted(set(self.metadata["molecule"]) - set(LAYOUTS))
        if unknown:
            raise DatasetError(f"{self.root / METADATA} names molecule types {unknown} this flowbb does not know "
                               f"(known: {list(LAYOUTS)}): update flowbb or preprocess the raw files again")
        self._arrays: dict[str, dict[str, np.ndarray]] = {}
        self._offset = self.metadata["offset"].to_numpy(np.int64)
        self._length = self.metadata["length"].to_numpy(np.int64)
        self._molecule = self.metadata["molecule"].to_numpy(object)

    def __len__(self) -> int:
        return len(self.metadata)

    def _molecule_arrays(self, molecule: str) -> dict[str, np.ndarray]:
        """The memory-mapped arrays of one molecule type (opened on first use)."""
        if molecule not in self._arrays:
            layout = LAYOUTS[molecule]
            missing = [layout.file(n) for n in layout.arrays if not (self.root / layout.file(n)).is_file()]
            if missing:
                raise DatasetNotFoundError(f"processed dataset {self.root} has {molecule} chains but no "
                                           f"{', '.join(missing)}: preprocess the raw files again")
            self._arrays[molecule] = {n: np.load(self.root / layout.file(n), mmap_mode="r") for n in layout.arrays}
        return self._arrays[molecule]

    def molecule(self, row: int) -> str:
        """Molecule type of chain ``row`` ('protein' or 'rna')."""
        return str(self._molecule[row])

    def chain(self, row: int) -> dict[str, np.ndarray]:
        """Arrays of one chain (copies): atoms [L, A, 3] float32, atom_mask [L, A] bool, residue_numbers [L],
        insertion_codes [L] (S1), residue_index [L]; A = 4 (N, CA, C, O) for protein, 12 for RNA
        (:data:`LAYOUTS`)."""
        start = int(self._offset[row])
        stop = start + int(self._length[row])
        arrays = self._molecule_arrays(self.molecule(row))
        return {name: np.array(array[start:stop]) for name, array in arrays.items()}
