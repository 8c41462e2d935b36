"""Read protein chains from PDB / mmCIF / BinaryCIF files (biotite).

Reading (:func:`read_chains`):

- formats and compression: :func:`flowbb.data.structure_io.files.split_format`;
- first model, first alternate location, protein residues only: the 20 standard amino acids and the
  modified ones of :mod:`flowbb.data.residues` mapped to their parent (MSE -> MET, ...). HETATM records
  of *standard* amino acids (free amino-acid ligands) are dropped; waters, ions and ligands are ignored;
- per chain (author chain id): one-letter sequence, N/CA/C/O coordinates with per-atom masks, residue
  numbers with insertion codes, chain breaks (consecutive residues whose C(i)-N(i+1) distance is above
  2 A or cannot be measured because an atom is missing);
- header facts when present (:mod:`flowbb.data.structure_io.headers`): resolution, experimental method,
  deposition date, PDB id, oligomeric state.

Problems raise :class:`~flowbb.data.structure_io.files.StructureReadError` with the file and one of the reasons
in :data:`~flowbb.data.structure_io.files.REASONS`.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from flowbb.data.residues import BACKBONE_ATOMS, STANDARD_THREE_TO_ONE, THREE_TO_ONE
from flowbb.data.structure_io.backbone_filter import first_model_backbone_cif, first_model_backbone_lines
from flowbb.data.structure_io.files import (
    CA_ONLY,
    NO_PROTEIN,
    NOT_A_STRUCTURE,
    StructureReadError,
    decode_text,
    read_payload,
    split_format,
)
from flowbb.data.structure_io.headers import cif_header, pdb_header

#: maximal C(i)-N(i+1) distance (A) of a peptide bond; longer means a chain break
CHAIN_BREAK_DISTANCE = 2.0


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


# ---------------------------------------------------------------- parsing
def _load(path: Path, fmt: str, data: bytes) -> tuple[object, dict]:
    """-> (biotite AtomArray of model 1, header facts). Imports biotite lazily (cheap for the caller)."""
    import biotite.structure.io.pdb as biotite_pdb
    import biotite.structure.io.pdbx as biotite_pdbx

    try:
        if fmt == "pdb":
            lines = decode_text(path, data).splitlines()
            atom_lines = first_model_backbone_lines(lines)
            if not atom_lines:
                if any(line.startswith(("ATOM  ", "HETATM")) for line in lines):
                    raise StructureReadError(path, NO_PROTEIN, "no backbone atom names (N, CA, C, O)")
                raise StructureReadError(path, NOT_A_STRUCTURE, "no ATOM/HETATM records")
            pdb_file = biotite_pdb.PDBFile.read(io.StringIO("\n".join(atom_lines)))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # element guessing for files without element columns
                array = biotite_pdb.get_structure(pdb_file, model=1, altloc="first")
            facts = pdb_header(lines)
        else:
            if fmt == "cif":
                text = first_model_backbone_cif(decode_text(path, data))
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
            facts = cif_header(block)
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
    data = read_payload(path, compression)
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
