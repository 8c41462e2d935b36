"""Read protein chains from PDB / mmCIF / BinaryCIF files (biotite) and write backbone PDB files.

Reading (:func:`read_chains`):

- formats by file name: ``.pdb``/``.ent`` (PDB), ``.cif``/``.mmcif`` (mmCIF), ``.bcif`` (BinaryCIF), each
  optionally compressed as ``.gz`` or ``.bz2`` (``pdb1abc.ent.gz`` and ``1abc.cif.gz`` mirror names work);
- first model, first alternate location, protein residues only: the 20 standard amino acids and the
  modified ones of :mod:`flowbb.data.residues` mapped to their parent (MSE -> MET, ...). HETATM records
  of *standard* amino acids (free amino-acid ligands) are dropped; waters, ions and ligands are ignored;
- per chain (author chain id): one-letter sequence, N/CA/C/O coordinates with per-atom masks, residue
  numbers with insertion codes, chain breaks (consecutive residues whose C(i)-N(i+1) distance is above
  2 A or cannot be measured because an atom is missing);
- header facts when present: resolution, experimental method, deposition date, PDB id, oligomeric state
  (PDB: ``HEADER``, ``EXPDTA``, ``REMARK 2``, ``REMARK 350``; mmCIF: ``refine``/``reflns``/
  ``em_3d_reconstruction``, ``exptl``, ``pdbx_database_status``, ``pdbx_struct_assembly``).

Problems raise :class:`StructureReadError` with the file and one of the reasons in :data:`REASONS`.
"""

from __future__ import annotations

import bz2
import gzip
import io
import re
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from flowbb.data.residues import BACKBONE_ATOMS, ONE_TO_THREE, STANDARD_THREE_TO_ONE, THREE_TO_ONE

#: maximal C(i)-N(i+1) distance (A) of a peptide bond; longer means a chain break
CHAIN_BREAK_DISTANCE = 2.0

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


@dataclass
class ChainData:
    """One protein chain.

    Attributes:
        chain_id: author chain id ('' when the file has none).
        sequence: one-letter sequence, length L (parents for modified residues, 'X' unknown).
        atoms: float32 [L, 4, 3] N, CA, C, O coordinates in A, 0 where missing.
        atom_mask: bool [L, 4], True where the atom is present.
        residue_numbers: int64 [L] author residue numbers.
        insertion_codes: '<U1' [L] insertion codes ('' when none).
        chain_breaks: number of breaks between consecutive residues (see ``break_after``).
        break_after: bool [L-1], True where residues i and i+1 are not peptide-bonded.
        entity_id: mmCIF entity id / PDB ``COMPND MOL_ID`` of the chain when known.
    """

    chain_id: str
    sequence: str
    atoms: np.ndarray
    atom_mask: np.ndarray
    residue_numbers: np.ndarray
    insertion_codes: np.ndarray
    chain_breaks: int
    break_after: np.ndarray
    entity_id: str | None = None

    @property
    def length(self) -> int:
        """Number of residues L (observed amino-acid residues)."""
        return len(self.sequence)

    @property
    def res_mask(self) -> np.ndarray:
        """bool [L]: residue has N, CA and C (it defines a frame)."""
        return self.atom_mask[:, :3].all(axis=1)

    @property
    def modeled_length(self) -> int:
        """Number of residues with N, CA and C."""
        return int(self.res_mask.sum())

    @property
    def residue_index(self) -> np.ndarray:
        """int64 [L]: see :func:`residue_index_from_numbering`."""
        return residue_index_from_numbering(self.residue_numbers, self.break_after)


@dataclass
class ParsedStructure:
    """Protein chains and header facts of one file (None where the file does not say)."""

    path: str
    chains: list[ChainData]
    num_protein_chains: int
    resolution: float | None = None
    method: str | None = None
    deposition_date: str | None = None
    pdb_id: str | None = None
    oligomeric_detail: str | None = None
    extra: dict = field(default_factory=dict)


def residue_index_from_numbering(
    residue_numbers: np.ndarray, break_after: np.ndarray | None = None
) -> np.ndarray:
    """Strictly increasing residue index starting at 0 from author numbering.

    The step between consecutive residues is the numbering difference when positive (gaps for missing
    residues show), else 1 (insertion codes, non-monotonic numbering). Where the chain is physically broken
    (``break_after``) the step is at least 2, so a break always shows as a gap.

    Args:
        residue_numbers: int [L].
        break_after: bool [L-1] or None.
    Returns:
        int64 [L].
    """
    numbers = np.asarray(residue_numbers, dtype=np.int64)
    if numbers.size == 0:
        return numbers.copy()
    step = np.maximum(np.diff(numbers), 1)
    if break_after is not None and len(break_after):
        step = np.where(np.asarray(break_after, dtype=bool), np.maximum(step, 2), step)
    return np.concatenate([[0], np.cumsum(step)]).astype(np.int64)


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


def _read_payload(path: Path, compression: str | None) -> bytes:
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


def _decode_text(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        if data.count(b"\x00") or sum(b > 127 for b in data[:4096]) > 40:
            raise StructureReadError(path, NOT_A_STRUCTURE, "binary content") from None
        return data.decode("latin-1")


# ---------------------------------------------------------------- header facts
_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
    )
}
_RESOLUTION_RE = re.compile(r"RESOLUTION\.\s+([0-9.]+)\s+ANGSTROM")


def _pdb_date(text: str) -> str | None:
    match = re.fullmatch(r"(\d{2})-([A-Z]{3})-(\d{2})", text.strip())
    if not match or match.group(2) not in _MONTHS:
        return None
    year = int(match.group(3))
    year += 1900 if year >= 70 else 2000
    return f"{year:04d}-{_MONTHS[match.group(2)]:02d}-{int(match.group(1)):02d}"


def _pdb_header(lines: Sequence[str]) -> dict:
    facts: dict = {}
    methods: list[str] = []
    entity_chains: dict[str, str] = {}
    mol_id: str | None = None
    for line in lines:
        record = line[:6]
        if record in ("ATOM  ", "HETATM", "MODEL "):
            break
        if record == "HEADER":
            facts["deposition_date"] = _pdb_date(line[50:59])
            pdb_id = line[62:66].strip()
            facts["pdb_id"] = pdb_id.upper() or None
        elif record == "EXPDTA":
            methods.extend(m.strip() for m in line[10:].split(";") if m.strip())
        elif record == "REMARK":
            if line[6:10] == "   2" and "RESOLUTION." in line:
                match = _RESOLUTION_RE.search(line)
                if match:
                    try:
                        facts["resolution"] = float(match.group(1))
                    except ValueError:
                        pass
            elif line[6:10] == " 350" and "oligomeric_detail" not in facts and "BIOLOGICAL UNIT:" in line:
                facts["oligomeric_detail"] = line.split("BIOLOGICAL UNIT:")[1].strip().lower() or None
        elif record == "COMPND":
            text = line[10:].strip()
            if text.startswith("MOL_ID:"):
                mol_id = text[7:].strip(" ;")
            elif text.startswith("CHAIN:") and mol_id is not None:
                for chain in text[6:].strip(" ;").split(","):
                    entity_chains[chain.strip()] = mol_id
    if methods:
        facts["method"] = "; ".join(methods)
    facts["entity_of_chain"] = entity_chains
    return facts


def _cif_values(block, category: str, key: str) -> list[str]:
    if category not in block or key not in block[category]:
        return []
    values = block[category][key].as_array(str)
    return [v for v in (str(x).strip() for x in values) if v and v not in ("?", ".")]


def _cif_header(block) -> dict:
    facts: dict = {}
    for category, key in (
        ("refine", "ls_d_res_high"),
        ("reflns", "d_resolution_high"),
        ("em_3d_reconstruction", "resolution"),
    ):
        for value in _cif_values(block, category, key):
            try:
                facts["resolution"] = float(value)
                break
            except ValueError:
                continue
        if "resolution" in facts:
            break
    methods = _cif_values(block, "exptl", "method")
    if methods:
        facts["method"] = "; ".join(methods)
    dates = _cif_values(block, "pdbx_database_status", "recvd_initial_deposition_date")
    if dates:
        facts["deposition_date"] = dates[0]
    ids = _cif_values(block, "entry", "id")
    if ids:
        facts["pdb_id"] = ids[0].upper()
    oligo = _cif_values(block, "pdbx_struct_assembly", "oligomeric_details")
    if oligo:
        facts["oligomeric_detail"] = oligo[0].lower()
    return facts


# ---------------------------------------------------------------- parsing
_BACKBONE_NAMES = frozenset(BACKBONE_ATOMS) | {"OT1", "O1"}


def _first_model_backbone_cif(text: str) -> str:
    """mmCIF text with the ``atom_site`` loop cut to backbone atoms of the first model (else unchanged).

    Same idea as for PDB files: biotite's CIF tokenizer spends its time on the atom_site rows. Rows are
    filtered only when the loop has one row per line with as many whitespace-separated tokens as columns
    (as wwPDB files do); anything unusual leaves the text untouched.
    """
    start = text.find("\nloop_\n_atom_site.")
    if start < 0:
        return text
    lines = text[start + 1 :].split("\n")
    columns = []
    i = 1
    while i < len(lines) and lines[i].startswith("_atom_site."):
        columns.append(lines[i].strip()[len("_atom_site.") :])
        i += 1
    name_col = "label_atom_id" if "label_atom_id" in columns else "auth_atom_id"
    if name_col not in columns:
        return text
    name_at = columns.index(name_col)
    model_at = columns.index("pdbx_PDB_model_num") if "pdbx_PDB_model_num" in columns else None
    kept, first_model, end = [], None, i
    names = _BACKBONE_NAMES
    while end < len(lines):
        line = lines[end]
        if not line or line[0] in "#_" or line.startswith(("loop_", "data_")):
            break
        tokens = line.split()
        if len(tokens) != len(columns):
            return text
        if model_at is not None:
            first_model = tokens[model_at] if first_model is None else first_model
            if tokens[model_at] != first_model:
                end += 1
                continue
        if tokens[name_at].strip("\"'") in names:
            kept.append(line)
        end += 1
    if not kept:
        return text
    return text[: start + 1] + "\n".join(lines[:i] + kept + lines[end:])


def _first_model_backbone_lines(lines: list[str]) -> list[str]:
    """ATOM/HETATM lines of backbone atom names up to the end of the first model.

    biotite's PDB parser spends its time per atom line; handing it only the (at most 5 per residue)
    backbone lines of model 1 makes parsing several times faster with the same result for N/CA/C/O.
    Residues without any backbone atom are thereby dropped; they carry no backbone information.
    """
    out = []
    names = _BACKBONE_NAMES
    for line in lines:
        record = line[:6]
        if record == "ATOM  " or record == "HETATM":
            if line[12:16].strip() in names:
                out.append(line)
        elif record == "ENDMDL":
            break
    return out


def _load(path: Path, fmt: str, data: bytes) -> tuple[object, dict]:
    """-> (biotite AtomArray of model 1, header facts). Imports biotite lazily (cheap for the caller)."""
    import biotite.structure.io.pdb as biotite_pdb
    import biotite.structure.io.pdbx as biotite_pdbx

    try:
        if fmt == "pdb":
            lines = _decode_text(path, data).splitlines()
            atom_lines = _first_model_backbone_lines(lines)
            if not atom_lines:
                if any(line.startswith(("ATOM  ", "HETATM")) for line in lines):
                    raise StructureReadError(path, NO_PROTEIN, "no backbone atom names (N, CA, C, O)")
                raise StructureReadError(path, NOT_A_STRUCTURE, "no ATOM/HETATM records")
            pdb_file = biotite_pdb.PDBFile.read(io.StringIO("\n".join(atom_lines)))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # element guessing for files without element columns
                array = biotite_pdb.get_structure(pdb_file, model=1, altloc="first")
            facts = _pdb_header(lines)
        else:
            if fmt == "cif":
                text = _first_model_backbone_cif(_decode_text(path, data))
                pdbx_file = biotite_pdbx.CIFFile.read(io.StringIO(text))
            else:
                pdbx_file = biotite_pdbx.BinaryCIFFile.read(io.BytesIO(data))
            block = pdbx_file.block
            if "atom_site" not in block:
                raise StructureReadError(path, NOT_A_STRUCTURE, "no atom_site category")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # e.g. files without auth_* columns: label_* are used
                array = biotite_pdbx.get_structure(
                    block, model=1, altloc="first", use_author_fields=True, extra_fields=["label_entity_id"]
                )
            facts = _cif_header(block)
    except StructureReadError:
        raise
    except Exception as exc:  # noqa: BLE001 -- biotite raises many types on malformed input
        raise StructureReadError(path, NOT_A_STRUCTURE, f"{type(exc).__name__}: {exc}"[:200]) from None
    if array.array_length() == 0:
        raise StructureReadError(path, NOT_A_STRUCTURE, "no atoms")
    return array, facts


def _chains_from_array(array, facts: dict) -> tuple[list[ChainData], int]:
    """Split an AtomArray into protein ChainData (file order). -> (chains, number of protein chains)."""
    res_name = np.char.upper(np.char.strip(array.res_name.astype(str)))
    names, inverse = np.unique(res_name, return_inverse=True)
    codes = np.array([THREE_TO_ONE.get(n, "") for n in names])
    standard = np.array([n in STANDARD_THREE_TO_ONE for n in names])
    keep = codes[inverse] != ""
    # standard amino acids in HETATM records are free ligands, not chain residues
    keep &= ~(array.hetero & standard[inverse])
    if not keep.any():
        return [], 0
    sel = np.nonzero(keep)[0]
    chain_id = array.chain_id[sel].astype(str)
    res_id = array.res_id[sel].astype(np.int64)
    ins_code = array.ins_code[sel].astype(str)
    atom_name = array.atom_name[sel].astype(str)
    coord = array.coord[sel].astype(np.float32)
    one = codes[inverse[sel]]
    entity = (
        array.label_entity_id[sel].astype(str)
        if "label_entity_id" in array.get_annotation_categories()
        else None
    )

    new_res = np.ones(len(sel), dtype=bool)
    new_res[1:] = (
        (chain_id[1:] != chain_id[:-1])
        | (res_id[1:] != res_id[:-1])
        | (ins_code[1:] != ins_code[:-1])
        | (res_name[sel][1:] != res_name[sel][:-1])
    )
    res_of_atom = np.cumsum(new_res) - 1
    starts = np.nonzero(new_res)[0]
    n_res = len(starts)
    atoms = np.zeros((n_res, 4, 3), dtype=np.float32)
    mask = np.zeros((n_res, 4), dtype=bool)
    for slot, name in enumerate(BACKBONE_ATOMS):
        hit = np.nonzero(atom_name == name)[0]
        # keep the first occurrence per residue (duplicates can survive in odd files)
        res, first = np.unique(res_of_atom[hit], return_index=True)
        atoms[res, slot] = coord[hit[first]]
        mask[res, slot] = True
    # CHARMM-style terminal oxygen names when O is absent
    for alt in ("OT1", "O1"):
        hit = np.nonzero(atom_name == alt)[0]
        if len(hit):
            res, first = np.unique(res_of_atom[hit], return_index=True)
            missing = ~mask[res, 3]
            atoms[res[missing], 3] = coord[hit[first][missing]]
            mask[res[missing], 3] = True

    res_chain = chain_id[starts]
    chain_order = list(dict.fromkeys(res_chain.tolist()))
    entity_of_chain = facts.get("entity_of_chain", {})
    chains = []
    for cid in chain_order:
        idx = np.nonzero(res_chain == cid)[0]
        a, m = atoms[idx], mask[idx]
        if len(idx) > 1:
            bond = np.linalg.norm(a[1:, 0] - a[:-1, 2], axis=-1)
            break_after = ~(m[:-1, 2] & m[1:, 0] & (bond <= CHAIN_BREAK_DISTANCE))
        else:
            break_after = np.zeros(0, dtype=bool)
        if entity is not None:
            ent = entity[starts[idx[0]]]
            ent = ent if ent not in ("", "?", ".") else None
        else:
            ent = entity_of_chain.get(cid)
        chains.append(
            ChainData(
                chain_id=cid.strip(),
                sequence="".join(one[starts[idx]].tolist()),
                atoms=a,
                atom_mask=m,
                residue_numbers=res_id[starts[idx]],
                insertion_codes=ins_code[starts[idx]].astype("<U1"),
                chain_breaks=int(break_after.sum()),
                break_after=break_after,
                entity_id=ent,
            )
        )
    return chains, len(chains)


def read_chains(path: str | Path) -> ParsedStructure:
    """Parse the protein chains and header facts of one structure file.

    Args:
        path: ``.pdb``/``.ent``/``.cif``/``.mmcif``/``.bcif`` file, optionally ``.gz``/``.bz2``.
    Returns:
        :class:`ParsedStructure`; ``chains`` in file order (all protein chains, any length).
    Raises:
        StructureReadError: unsupported extension, empty file, truncated/corrupt compression, not a
            structure, no protein chain, or only CA atoms (no residue with N, CA and C).
    """
    path = Path(path)
    fmt, compression = split_format(path)
    data = _read_payload(path, compression)
    array, facts = _load(path, fmt, data)
    chains, n_protein = _chains_from_array(array, facts)
    if not chains:
        raise StructureReadError(path, NO_PROTEIN)
    if all(chain.modeled_length == 0 for chain in chains):
        detail = "only CA atoms" if all(c.atom_mask[:, 1].any() for c in chains) else "no complete backbone"
        raise StructureReadError(path, CA_ONLY, detail)
    return ParsedStructure(
        path=str(path),
        chains=chains,
        num_protein_chains=n_protein,
        resolution=facts.get("resolution"),
        method=facts.get("method"),
        deposition_date=facts.get("deposition_date"),
        pdb_id=facts.get("pdb_id"),
        oligomeric_detail=facts.get("oligomeric_detail"),
    )


# ---------------------------------------------------------------- writing
_HEADER = "HEADER    GENERATED BACKBONE (FLOWBB)"
_CRYST1 = "CRYST1    1.000    1.000    1.000  90.00  90.00  90.00 P 1           1"


def _as_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _residue_names(residue_name: str | Sequence[str], length: int) -> list[str]:
    if isinstance(residue_name, str):
        name = residue_name.upper()
        if name in STANDARD_THREE_TO_ONE or name == "UNK":
            return [name] * length
        if len(residue_name) != length:
            raise ValueError(
                f"residue_name {residue_name!r} is neither a three-letter name nor a sequence of length {length}"
            )
        return [ONE_TO_THREE.get(c, "UNK") for c in name]
    names = [str(n).upper() for n in residue_name]
    if len(names) != length:
        raise ValueError(f"{len(names)} residue names for {length} residues")
    return names


def format_backbone_pdb(
    atoms,
    residue_name: str | Sequence[str] = "GLY",
    chain_id: str = "A",
    models: bool | None = None,
    atom_mask=None,
    b_factors=None,
    remark: str | None = None,
    atom_names: Sequence[str] | None = None,
) -> str:
    """PDB text for backbone atoms; see :func:`write_backbone_pdb` for the arguments."""
    coords = _as_numpy(atoms)
    if coords.ndim == 3:
        coords = coords[None]
        multi = bool(models)
    elif coords.ndim == 4:
        multi = True if models is None else bool(models) or coords.shape[0] > 1
    else:
        raise ValueError(f"atoms must be [L, A, 3] or [M, L, A, 3], got shape {tuple(coords.shape)}")
    n_models, length, n_atoms, _ = coords.shape
    if atom_names is not None:  # one tuple of A names, or one per residue
        per_residue = [tuple(atom_names)] * length if isinstance(atom_names[0], str) else [tuple(a) for a in atom_names]
        if len(per_residue) != length or any(len(a) != n_atoms for a in per_residue):
            raise ValueError(f"atom_names must be {n_atoms} names, or {length} tuples of {n_atoms} names")
    if (atom_names is None and not 1 <= n_atoms <= 4) or coords.shape[-1] != 3:
        raise ValueError(
            f"atoms must have 1-4 backbone atoms (N, CA, C, O) and xyz, got {tuple(coords.shape)}"
        )
    if length > 9999:
        raise ValueError(f"{length} residues do not fit PDB residue numbering (max 9999)")
    if len(chain_id) != 1:
        raise ValueError(f"chain_id must be one character, got {chain_id!r}")
    mask = np.ones((length, n_atoms), dtype=bool) if atom_mask is None else _as_numpy(atom_mask).astype(bool)
    if mask.shape != (length, n_atoms):
        raise ValueError(f"atom_mask shape {mask.shape} does not match atoms {(length, n_atoms)}")
    if not np.isfinite(coords[:, mask]).all():
        raise ValueError("atoms contain NaN or infinite coordinates")
    if np.abs(coords[:, mask]).max(initial=0.0) >= 9999.0:
        raise ValueError("coordinates out of the PDB format's range (|x| < 9999 A)")
    bfac = np.zeros(length) if b_factors is None else _as_numpy(b_factors).reshape(length)
    names = _residue_names(residue_name, length)
    if atom_names is None:
        names_of = [(" N  ", " CA ", " C  ", " O  ")[:n_atoms] if n_atoms != 1 else (" CA ",)] * length
        elements_of = [("N", "C", "C", "O")[:n_atoms] if n_atoms != 1 else ("C",)] * length
    else:  # names of at most 3 characters with a one-letter element (nucleotide backbones): column 14 on
        names_of = [tuple(f" {name:<3}" for name in a) for a in per_residue]
        elements_of = [tuple(name[0] for name in a) for a in per_residue]

    out = [_HEADER]
    if remark:
        out.extend(f"REMARK   1 {line}"[:80] for line in remark.splitlines())
    out.append(_CRYST1)
    for m in range(n_models):
        if multi:
            out.append(f"MODEL     {m + 1:>4}")
        serial = 0
        for i in range(length):
            for k in range(n_atoms):
                if not mask[i, k]:
                    continue
                serial += 1
                x, y, z = coords[m, i, k]
                out.append(
                    f"ATOM  {serial:>5} {names_of[i][k]} {names[i]:>3} {chain_id}{i + 1:>4}    "
                    f"{x:8.3f}{y:8.3f}{z:8.3f}{1.0:6.2f}{bfac[i]:6.2f}          {elements_of[i][k]:>2}  "
                )
        out.append(f"TER   {serial + 1:>5}      {names[-1] if length else 'GLY':>3} {chain_id}{length:>4}")
        if multi:
            out.append("ENDMDL")
    out.append("END")
    return "\n".join(out) + "\n"


def write_backbone_pdb(
    path: str | Path,
    atoms,
    residue_name: str | Sequence[str] = "GLY",
    chain_id: str = "A",
    models: bool | None = None,
    atom_mask=None,
    b_factors=None,
    remark: str | None = None,
    atom_names: Sequence[str] | None = None,
) -> Path:
    """Write backbone atoms as a PDB file (HEADER, CRYST1, one chain, residues numbered 1..L, END).

    Args:
        path: output file (parent folders are created).
        atoms: [L, A, 3] or [M, L, A, 3] (numpy or torch), A = 4 (N, CA, C, O), 3 (N, CA, C) or 1 (CA), in A.
        residue_name: one three-letter name for every residue ("GLY", "ALA", ...), a one-letter sequence of
            length L, or a list of L three-letter names.
        chain_id: one character.
        models: None -> MODEL/ENDMDL records iff atoms is 4-D (a trajectory); True forces them, False
            forbids them for a single model.
        atom_mask: bool [L, A] or None; atoms with False are not written.
        b_factors: [L] per-residue B-factor column (e.g. pLDDT), zeros by default.
        remark: optional text written as REMARK 1 lines.
        atom_names: the A atom names of another molecule type (each at most 3 characters, element = first letter),
            or L tuples of A names (one per residue), e.g. :meth:`flowbb.molecules.rna.RNA.pdb_atom_names` with
            residue names as a list of L nucleotide names (A, C, G, U or N); None: protein N, CA, C, O (A <= 4).
    Returns:
        the path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = format_backbone_pdb(atoms, residue_name, chain_id, models, atom_mask, b_factors, remark, atom_names)
    path.write_text(text)
    return path
