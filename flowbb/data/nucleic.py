"""Read RNA chains from PDB / mmCIF / BinaryCIF files (biotite): the atoms of the RNA frame and torsions.

Reading (:func:`read_rna_chains`):

- formats and compression as :mod:`flowbb.data.structure_io.files` (its ``split_format``, payload decompression
  and text decoding are reused, with its :class:`~flowbb.data.structure_io.files.StructureReadError` and reasons);
- first model, first alternate location; residues whose Chemical Component Dictionary link type is an RNA
  linking type (biotite's ``info.link_type``), named by their parent nucleotide A, C, G, U (biotite's
  ``info.one_letter_code``, i.e. the CCD's ``mon_nstd_parent_comp_id``: PSU -> U, 5MC -> C, OMG -> G, ...;
  'N' when the parent is unknown). DNA nucleotides are dropped and reported; waters, ions, ligands and amino
  acids are ignored;
- old atom names are normalised (``C4*`` -> ``C4'``, ``O1P``/``O2P`` -> ``OP1``/``OP2``);
- per chain (author chain id) and nucleotide: the 12 atoms of :data:`RNA_ATOMS` (the order of
  :data:`flowbb.geometry.rna.ATOM_ORDER`) with a per-atom mask, residue numbers, insertion codes, chain breaks
  (O3'(i)-P(i+1) longer than :data:`O3P_BREAK_DISTANCE` or not measurable), and the problems found.

A nucleotide whose C5' lies on the wrong side of the O4'-C4'-C3' plane (inverted C4' stereochemistry, a
modelling error: the rebuild of :mod:`flowbb.geometry.rna` assumes D-ribose) is reported, not dropped.
The glycosidic base atom "N" is N9 for purines (A, G) and N1 for pyrimidines (C, U); pseudouridine (PSU) is
C-glycosidic and gives C5. A base atom farther than :data:`GLYCOSIDIC_MAX` from C1' is not used.
Bad or partial nucleotides are kept (missing atoms masked) and reported in ``RNAChain.problems`` with a
reason; they never make reading fail. This module imports neither torch nor :mod:`flowbb.geometry`, so
preprocessing workers stay light; ``tests/data/test_nucleic.py`` checks that :data:`RNA_ATOMS` equals the
geometry's order.
"""

from __future__ import annotations

import functools
import io
import itertools
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from flowbb.data.structure_io.files import (
    NOT_A_STRUCTURE,
    StructureReadError,
    decode_text,
    read_payload,
    split_format,
)
from flowbb.data.structure_io.read import residue_index_from_numbering

#: atoms read per nucleotide, in this order ("N" is the glycosidic base atom N9/N1); the frame atoms first
RNA_ATOMS = ("C4'", "O4'", "C3'", "C5'", "C2'", "C1'", "N", "O3'", "O5'", "P", "OP1", "OP2")
#: indices of the frame atoms C4', O4', C3' in :data:`RNA_ATOMS`
FRAME_ATOMS = (0, 1, 2)
#: O3'(i)-P(i+1) distance (A) above which consecutive nucleotides count as not bonded (bond: about 1.6 A)
O3P_BREAK_DISTANCE = 2.0
#: C1'-N9/N1 distance (A) above which the base atom is not used (bond: about 1.47 A)
GLYCOSIDIC_MAX = 2.0

NO_RNA = "no RNA chain"
# problems of single nucleotides (not fatal)
MISSING_FRAME = "missing frame atoms"
MISSING_ATOMS = "missing atoms"
UNKNOWN_PARENT = "unknown parent nucleotide"
DNA_NUCLEOTIDE = "DNA nucleotide dropped"
BASE_NOT_BONDED = "glycosidic atom not bonded to C1'"
INVERTED_C4 = "inverted C4' chirality"

_ALIASES = {"O1P": "OP1", "O2P": "OP2"}
_BASE_ATOM = {"A": "N9", "G": "N9", "C": "N1", "U": "N1"}
_C_GLYCOSIDIC = {"PSU": "C5"}  # pseudouridine: C1'-C5 bond
# atom names (after normalisation) worth parsing: everything else is dropped before biotite sees it
_WANTED = frozenset(RNA_ATOMS) | {"N9", "N1", "C5"}


@dataclass
class NucleotideProblem:
    """A bad or partial nucleotide: position in the chain (-1 if dropped), author numbering, name, reason."""

    position: int
    residue_number: int
    insertion_code: str
    res_name: str
    reason: str
    detail: str = ""


@dataclass
class RNAChain:
    """One RNA chain.

    Attributes:
        chain_id: author chain id ('' when the file has none).
        sequence: parent one-letter codes (A, C, G, U; 'N' unknown), length L.
        res_names: '<U5' [L] residue names as in the file.
        atoms: float32 [L, 12, 3] coordinates (A) in the order :data:`RNA_ATOMS`, 0 where missing.
        atom_mask: bool [L, 12], True where the atom is present.
        residue_numbers: int64 [L] author residue numbers.
        insertion_codes: '<U1' [L] ('' when none).
        break_after: bool [L-1], True where nucleotides i and i+1 are not O3'-P bonded.
        problems: bad/partial nucleotides, with reasons (see module docstring).
    """

    chain_id: str
    sequence: str
    res_names: np.ndarray
    atoms: np.ndarray
    atom_mask: np.ndarray
    residue_numbers: np.ndarray
    insertion_codes: np.ndarray
    break_after: np.ndarray
    problems: list[NucleotideProblem] = field(default_factory=list)

    @property
    def length(self) -> int:
        """Number of nucleotides L."""
        return len(self.sequence)

    @property
    def res_mask(self) -> np.ndarray:
        """bool [L]: the nucleotide has C4', O4' and C3' (it defines a frame)."""
        return self.atom_mask[:, list(FRAME_ATOMS)].all(axis=1)

    @property
    def is_purine(self) -> np.ndarray:
        """bool [L]: parent is A or G."""
        return np.array([s in "AG" for s in self.sequence], dtype=bool)

    @property
    def chain_breaks(self) -> int:
        """Number of breaks between consecutive nucleotides."""
        return int(self.break_after.sum())

    @property
    def residue_index(self) -> np.ndarray:
        """int64 [L]: strictly increasing index from the numbering, gaps >= 2 at breaks."""
        return residue_index_from_numbering(self.residue_numbers, self.break_after)


@functools.lru_cache(maxsize=4096)
def rna_parent(res_name: str) -> str | None:
    """Parent nucleotide of a residue name: 'A'/'C'/'G'/'U', 'N' (RNA, unknown parent), 'DNA', or None (not a
    nucleotide). Uses biotite's CCD (``link_type``, ``one_letter_code``)."""
    from biotite.structure import info

    if res_name in _BASE_ATOM:
        return res_name
    try:
        link = (info.link_type(res_name) or "").upper()
        code = info.one_letter_code(res_name)
    except Exception:  # noqa: BLE001 -- names absent from the CCD
        return None
    if "RNA" in link:
        return code if code in _BASE_ATOM else "N"
    if "DNA" in link:
        return "DNA"
    return None


def _normalise_atom_name(name: str) -> str:
    name = name.replace("*", "'")
    return _ALIASES.get(name, name)


def _pdb_lines(lines: list[str]) -> list[str]:
    """ATOM/HETATM lines of the first model whose (normalised) atom name is needed, names normalised."""
    out = []
    for line in lines:
        record = line[:6]
        if record in ("ATOM  ", "HETATM"):
            name = line[12:16]
            norm = name.replace("*", "'").replace("O1P", "OP1").replace("O2P", "OP2")  # same widths
            if norm.strip() in _WANTED:
                out.append(line if norm == name else f"{line[:12]}{norm}{line[16:]}")
        elif record == "ENDMDL":
            break
    return out


def _load(path: Path, fmt: str, data: bytes):
    """-> biotite AtomArray (model 1, first altloc), atom names normalised."""
    import biotite.structure.io.pdb as biotite_pdb
    import biotite.structure.io.pdbx as biotite_pdbx

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if fmt == "pdb":
                lines = _pdb_lines(decode_text(path, data).splitlines())
                if not lines:
                    raise StructureReadError(path, NO_RNA, "no nucleotide backbone atom names")
                array = biotite_pdb.PDBFile.read(io.StringIO("\n".join(lines))).get_structure(
                    model=1, altloc="first"
                )
            else:
                if fmt == "cif":
                    block = biotite_pdbx.CIFFile.read(io.StringIO(decode_text(path, data))).block
                else:
                    block = biotite_pdbx.BinaryCIFFile.read(io.BytesIO(data)).block
                if "atom_site" not in block:
                    raise StructureReadError(path, NOT_A_STRUCTURE, "no atom_site category")
                array = biotite_pdbx.get_structure(block, model=1, altloc="first", use_author_fields=True)
                names = np.array([_normalise_atom_name(n) for n in array.atom_name.astype(str)])
                array = array[np.isin(names, list(_WANTED))]
                array.atom_name = names[np.isin(names, list(_WANTED))]
    except StructureReadError:
        raise
    except Exception as exc:  # noqa: BLE001 -- biotite raises many types on malformed input
        raise StructureReadError(path, NOT_A_STRUCTURE, f"{type(exc).__name__}: {exc}"[:200]) from None
    return array


def _chain(cid: str, rows: list[tuple], atom_name, coord, problems: list[NucleotideProblem]) -> RNAChain:
    """Assemble one chain from per-residue rows ``(res_id, ins, res_name, parent, atom_indices)``."""
    n = len(rows)
    atoms = np.zeros((n, len(RNA_ATOMS), 3), dtype=np.float32)
    mask = np.zeros((n, len(RNA_ATOMS)), dtype=bool)
    slot = {name: k for k, name in enumerate(RNA_ATOMS)}
    n_slot = slot["N"]
    for i, (res_id, ins, res_name, parent, idx) in enumerate(rows):
        base = _C_GLYCOSIDIC.get(res_name, _BASE_ATOM.get(parent))
        found: dict[str, int] = {}
        for j in idx:  # first occurrence wins
            found.setdefault(str(atom_name[j]), j)
        for name, k in slot.items():
            j = (
                found.get(name)
                if name != "N"
                else found.get(base)
                if base
                else found.get("N9", found.get("N1"))
            )
            if j is not None:
                atoms[i, k], mask[i, k] = coord[j], True
        if parent == "N":
            problems.append(NucleotideProblem(i, res_id, ins, res_name, UNKNOWN_PARENT))
        if mask[i, n_slot] and mask[i, slot["C1'"]]:
            d = float(np.linalg.norm(atoms[i, n_slot] - atoms[i, slot["C1'"]]))
            if d > GLYCOSIDIC_MAX:
                atoms[i, n_slot], mask[i, n_slot] = 0.0, False
                problems.append(NucleotideProblem(i, res_id, ins, res_name, BASE_NOT_BONDED, f"{d:.2f} A"))
        if mask[i, :4].all():  # C4', O4', C3', C5': C5' lies on the -z side of the frame in real ribose
            rel = atoms[i, 1:4] - atoms[i, 0]
            if float(np.linalg.det(rel.astype(np.float64).T)) > 0:
                problems.append(NucleotideProblem(i, res_id, ins, res_name, INVERTED_C4))
        missing = [RNA_ATOMS[k] for k in range(len(RNA_ATOMS)) if not mask[i, k]]
        if not mask[i, list(FRAME_ATOMS)].all():
            problems.append(NucleotideProblem(i, res_id, ins, res_name, MISSING_FRAME, " ".join(missing)))
        elif missing:
            problems.append(NucleotideProblem(i, res_id, ins, res_name, MISSING_ATOMS, " ".join(missing)))
    o3, p = slot["O3'"], slot["P"]
    if n > 1:
        bond = np.linalg.norm(atoms[:-1, o3] - atoms[1:, p], axis=-1)
        break_after = ~(mask[:-1, o3] & mask[1:, p] & (bond <= O3P_BREAK_DISTANCE))
    else:
        break_after = np.zeros(0, dtype=bool)
    return RNAChain(
        chain_id=cid.strip(),
        sequence="".join(r[3] for r in rows),
        res_names=np.array([r[2] for r in rows], dtype="<U5"),
        atoms=atoms,
        atom_mask=mask,
        residue_numbers=np.array([r[0] for r in rows], dtype=np.int64),
        insertion_codes=np.array([r[1] for r in rows], dtype="<U1"),
        break_after=break_after,
        problems=sorted(problems, key=lambda q: q.position),
    )


def read_rna_chains(path: str | Path) -> list[RNAChain]:
    """Parse the RNA chains of one structure file.

    Args:
        path: ``.pdb``/``.ent``/``.cif``/``.mmcif``/``.bcif`` file, optionally ``.gz``/``.bz2``.
    Returns:
        :class:`RNAChain` list in file order (every chain with at least one RNA nucleotide, any length).
    Raises:
        StructureReadError: unsupported extension, empty file, truncated/corrupt compression, not a structure,
            or no RNA chain (:data:`NO_RNA`). Bad nucleotides are reported per chain, not raised.
    """
    path = Path(path)
    fmt, compression = split_format(path)
    array = _load(path, fmt, read_payload(path, compression))
    if array.array_length() == 0:
        raise StructureReadError(path, NO_RNA, "no nucleotide backbone atoms")
    chain_id = array.chain_id.astype(str)
    res_id = array.res_id.astype(np.int64)
    ins_code = array.ins_code.astype(str)
    res_name = np.char.upper(np.char.strip(array.res_name.astype(str)))
    atom_name = array.atom_name.astype(str)
    new_res = np.ones(len(res_id), dtype=bool)
    new_res[1:] = (
        (chain_id[1:] != chain_id[:-1])
        | (res_id[1:] != res_id[:-1])
        | (ins_code[1:] != ins_code[:-1])
        | (res_name[1:] != res_name[:-1])
    )
    starts = np.append(np.nonzero(new_res)[0], len(res_id))
    rows: dict[str, list[tuple]] = {}
    problems: dict[str, list[NucleotideProblem]] = {}
    for s, e in itertools.pairwise(starts):
        cid, name = chain_id[s], res_name[s]
        parent = rna_parent(name)
        if parent is None:
            continue
        chain_rows = rows.setdefault(cid, [])
        chain_problems = problems.setdefault(cid, [])
        if parent == "DNA":
            chain_problems.append(NucleotideProblem(-1, int(res_id[s]), ins_code[s], name, DNA_NUCLEOTIDE))
            continue
        chain_rows.append((int(res_id[s]), ins_code[s], name, parent, range(s, e)))
    chains = [_chain(cid, r, atom_name, array.coord, problems[cid]) for cid, r in rows.items() if r]
    if not chains:
        raise StructureReadError(path, NO_RNA)
    return chains
