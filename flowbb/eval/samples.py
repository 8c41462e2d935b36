"""Backbone samples to evaluate: discovery in a folder, reading, grouping by length."""

from __future__ import annotations

import fnmatch
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flowbb.data.packing import BatchBudget, pack_batches
from flowbb.data.structure_io.files import is_structure_file
from flowbb.data.structure_io.read import read_chains

_EXT = re.compile(r"(\.(pdb|ent|cif|mmcif|bcif))(\.(gz|bz2))?$", re.IGNORECASE)


@dataclass
class Sample:
    """One backbone to evaluate.

    Attributes:
        name: unique id: the file's path relative to the samples folder, without extension (``length_100/sample_0``).
        path: the file.
        chain_id: the chain used.
        sequence: the file's one-letter sequence (poly-G/A for generated backbones; real for native chains).
        atoms: ``[L, 4, 3]`` float32 N, CA, C, O (Å), 0 where missing.
        atom_mask: ``[L, 4]`` bool.
        residue_index: ``[L]`` int64 (gaps at chain breaks).
    """

    name: str
    path: Path
    chain_id: str
    sequence: str
    atoms: np.ndarray
    atom_mask: np.ndarray
    residue_index: np.ndarray

    @property
    def length(self) -> int:
        """Number of residues L."""
        return len(self.sequence)

    @property
    def ca_mask(self) -> np.ndarray:
        """``[L]`` bool: residue has a CA atom."""
        return self.atom_mask[:, 1]

    @property
    def ca(self) -> np.ndarray:
        """``[L, 3]`` CA coordinates (0 where missing)."""
        return self.atoms[:, 1]

    @property
    def file_stem(self) -> str:
        """``name`` made safe as a single file name."""
        return self.name.replace("/", "__").replace("\\", "__")


def sample_name(path: Path, root: Path) -> str:
    """Relative path without the structure extension (``a/b/sample_0.pdb.gz`` -> ``a/b/sample_0``)."""
    return _EXT.sub("", path.relative_to(root).as_posix())


def discover_samples(
    samples_dir: str | Path, exclude: list[str] | tuple[str, ...] = ("*traj*",)
) -> list[Path]:
    """Structure files under ``samples_dir`` (recursive), sorted, minus names matching an ``exclude`` glob.

    Raises:
        FileNotFoundError: the folder does not exist or holds no structure file.
    """
    root = Path(samples_dir).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"samples_dir={samples_dir}: no such folder")
    files = []
    for p in sorted(root.rglob("*")):
        if not p.is_file() or not is_structure_file(p):
            continue
        rel = p.relative_to(root).as_posix()
        if any(fnmatch.fnmatch(p.name, pat) or fnmatch.fnmatch(rel, pat) for pat in exclude):
            continue
        files.append(p)
    if not files:
        raise FileNotFoundError(
            f"samples_dir={samples_dir}: no structure files (.pdb/.cif/.bcif, optionally .gz)"
        )
    return files


def read_sample(path: Path, root: Path, chain: str | None = None) -> Sample:
    """Read one sample: the chain ``chain`` (default: the first protein chain) of ``path``.

    Raises:
        StructureReadError: unreadable file; ValueError: the chain is missing.
    """
    parsed = read_chains(path)
    if chain is None:
        ch = parsed.chains[0]
    else:
        found = [c for c in parsed.chains if c.chain_id == chain]
        if not found:
            ids = [c.chain_id for c in parsed.chains]
            raise ValueError(f"{path}: no chain {chain!r} (chains: {ids})")
        ch = found[0]
    return Sample(
        name=sample_name(path, root),
        path=path,
        chain_id=ch.chain_id,
        sequence=ch.sequence,
        atoms=np.asarray(ch.atoms, dtype=np.float32),
        atom_mask=np.asarray(ch.atom_mask, dtype=bool),
        residue_index=np.asarray(ch.residue_index, dtype=np.int64),
    )


def same_length_groups(samples: list[Sample], group_size: int) -> list[list[Sample]]:
    """Groups of consecutive same-length samples (sorted by length, then name), at most ``group_size`` per group
    (:func:`flowbb.data.packing.pack_batches` with a batch-size budget).

    Groups depend only on the full sample list, so an interrupted and a resumed run fold exactly the same
    batches (identical numerics).
    """
    if group_size < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    order = sorted(range(len(samples)), key=lambda i: (samples[i].length, samples[i].name))
    lengths = [s.length for s in samples]
    groups = pack_batches(lengths, BatchBudget(max_batch_size=group_size), order=order, same_length=True)
    return [[samples[i] for i in group] for group in groups]


def sample_seed(seed: int, name: str) -> int:
    """Per-sample seed from the run seed and the sample's name (independent of order and batching)."""
    return zlib.crc32(f"{int(seed)}:{name}".encode()) & 0x7FFFFFFF


# ---------------------------------------------------------------- molecule type of a samples folder
MOLECULES = ("protein", "rna")
DESIGNABILITY_NOT_AVAILABLE_RNA = "not available for RNA (no inverse-folding/folding model installed)"


def atom_names(path: Path) -> set[str]:
    """Atom names of the first model of a structure file (``C4*`` read as ``C4'``).

    Raises:
        StructureReadError: unreadable file (bad extension, compression, not a structure).
    """
    from flowbb.data.structure_io.files import (
        NOT_A_STRUCTURE,
        StructureReadError,
        decode_text,
        read_payload,
        split_format,
    )

    fmt, compression = split_format(path)
    data = read_payload(path, compression)
    names: set[str] = set()
    if fmt == "pdb":
        for line in decode_text(path, data).splitlines():
            if line.startswith(("ATOM  ", "HETATM")):
                names.add(line[12:16].strip())
            elif line.startswith("ENDMDL"):
                break
    else:
        import io

        from biotite.structure.io import pdbx

        try:
            if fmt == "cif":
                block = pdbx.CIFFile.read(io.StringIO(decode_text(path, data))).block
            else:
                block = pdbx.BinaryCIFFile.read(io.BytesIO(data)).block
            names = {str(n) for n in block["atom_site"]["label_atom_id"].as_array(str)}
        except Exception as exc:  # noqa: BLE001 - biotite raises many types on malformed input
            raise StructureReadError(path, NOT_A_STRUCTURE, f"{type(exc).__name__}: {exc}"[:200]) from None
    if not names:
        raise StructureReadError(path, NOT_A_STRUCTURE, "no ATOM/HETATM records")
    return {n.replace("*", "'") for n in names}


def file_molecule(path: Path) -> str:
    """``rna`` when the file has C4' atoms and no CA, ``protein`` when it has CA atoms.

    Raises:
        StructureReadError: unreadable file; ValueError: neither CA nor C4' atoms.
    """
    names = atom_names(path)
    if "CA" in names:
        return "protein"
    if "C4'" in names:
        return "rna"
    raise ValueError(f"{path}: neither protein (CA) nor RNA (C4') backbone atoms")


def detect_molecule(files: list[Path], setting: str | None = "auto") -> str:
    """The molecule type of a samples folder: ``setting`` when it is ``protein`` or ``rna``, else (``auto``/None)
    from the files' atoms (:func:`file_molecule`). Files whose type cannot be read are left to the reader (which
    reports them as unreadable), unless no file can be typed.

    Raises:
        ValueError: an unknown setting, a folder mixing protein and RNA files, or no file with a known type
            (one line, naming a file).
    """
    choice = str(setting or "auto").lower()
    if choice in MOLECULES:
        return choice
    if choice != "auto":
        raise ValueError(f"molecule={setting!r}: expected auto, protein or rna")
    first: dict[str, Path] = {}
    errors: list[str] = []
    for p in files:
        try:
            first.setdefault(file_molecule(p), p)
        except Exception as err:  # noqa: BLE001 - reported below if no file can be typed
            errors.append(f"{p}: {err}".replace("\n", " "))
        if len(first) > 1:
            raise ValueError(
                f"samples folder mixes protein and RNA backbones ({first['protein']} has CA atoms, {first['rna']} "
                "has C4' and no CA): evaluate them in separate folders"
            )
    if not first:
        raise ValueError(
            f"cannot tell the molecule type of the samples: {errors[0] if errors else 'no files'}"
        )
    return next(iter(first))
