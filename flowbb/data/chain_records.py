"""Per-chain records of the preprocessing pipeline: one metadata row + per-residue arrays per kept chain.

:func:`protein_records` and :func:`rna_records` turn the chains read from one file
(:func:`flowbb.data.structure_io.read_chains`, :func:`flowbb.data.nucleic.read_rna_chains`) into metadata rows
(the columns of :data:`flowbb.data.shards.METADATA_COLUMNS`) and arrays in the layout of
:data:`flowbb.data.store.LAYOUTS`. Used by :func:`flowbb.data.preprocess.process_file`.

RNA rows: ``molecule`` 'rna'; ``modeled_length`` counts nucleotides with C4', O4' and C3' (a frame);
``radius_of_gyration`` is over C4'; DSSP fractions are NaN and ``secondary_structure`` empty (DSSP is for
proteins); header facts (resolution, method, date, PDB id) come from the protein reader when the file also
has protein chains, else they are unknown. Bad or partial nucleotides are kept (atoms masked) and summarised
in ``notes`` for the log.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from flowbb.data.nucleic import FRAME_ATOMS, RNAChain
from flowbb.data.secondary_structure import assign_dssp, ss_fractions
from flowbb.data.structure_io import ParsedStructure

Record = dict[str, Any]
Arrays = dict[str, np.ndarray]


def radius_of_gyration(ca, mask) -> float:
    """Radius of gyration (A) over the atoms present; ca [L, 3] (CA or C4'), mask [L] bool."""
    points = np.asarray(ca, dtype=np.float64)[np.asarray(mask, dtype=bool)]
    if len(points) == 0:
        return float("nan")
    return float(np.sqrt(((points - points.mean(axis=0)) ** 2).sum(axis=1).mean()))


def _arrays(atoms, atom_mask, residue_numbers, insertion_codes, residue_index) -> Arrays:
    return {
        "atoms": atoms.astype(np.float32),
        "atom_mask": atom_mask.astype(bool),
        "residue_numbers": residue_numbers.astype(np.int32),
        "insertion_codes": np.char.encode(insertion_codes.astype(str), "ascii").astype("S1"),
        "residue_index": residue_index.astype(np.int32),
    }


def protein_records(
    parsed: ParsedStructure, rel_path: str, min_length: int, dssp_method: str
) -> tuple[list[Record], list[Arrays], int]:
    """Rows and arrays of the protein chains with at least ``min_length`` modeled residues.

    Returns:
        (records, arrays per record: atoms [L, 4, 3], atom_mask [L, 4], ..., number of short chains dropped).
    """
    records, parts, short = [], [], 0
    for chain in parsed.chains:
        modeled = chain.modeled_length
        if modeled < min_length:
            short += 1
            continue
        res_mask = chain.res_mask
        ss = assign_dssp(chain.atoms, chain.atom_mask, chain.sequence, method=dssp_method)
        records.append(
            {
                "chain_id": chain.chain_id,
                "source_file": rel_path,
                "pdb_id": parsed.pdb_id,
                "entity_id": chain.entity_id,
                "length": chain.length,
                "modeled_length": modeled,
                "sequence": chain.sequence,
                "resolution": parsed.resolution,
                "method": parsed.method,
                "deposition_date": parsed.deposition_date,
                "oligomeric_detail": parsed.oligomeric_detail,
                "num_chains_in_file": parsed.num_protein_chains,
                **ss_fractions(ss, res_mask),
                "secondary_structure": ss,
                "radius_of_gyration": radius_of_gyration(chain.atoms[:, 1], chain.atom_mask[:, 1]),
                "num_chain_breaks": chain.chain_breaks,
                "first_residue_number": int(chain.residue_numbers[0]),
                "last_residue_number": int(chain.residue_numbers[-1]),
                "has_insertion_codes": bool((chain.insertion_codes != "").any()),
                "molecule": "protein",
            }
        )
        parts.append(
            _arrays(chain.atoms, chain.atom_mask, chain.residue_numbers, chain.insertion_codes, chain.residue_index)
        )
    return records, parts, short


def nucleotide_notes(chain: RNAChain) -> str:
    """One line on a chain's bad or partial nucleotides, e.g. ``chain A: 2 of 76 nucleotides: missing atoms (2)``;
    '' when there are none."""
    if not chain.problems:
        return ""
    counts = Counter(p.reason for p in chain.problems)
    positions = {p.position for p in chain.problems}
    reasons = ", ".join(f"{reason} ({n})" for reason, n in sorted(counts.items()))
    return f"chain {chain.chain_id or '-'}: {len(positions)} of {chain.length} nucleotides: {reasons}"


def rna_records(
    chains: list[RNAChain], rel_path: str, min_length: int, parsed: ParsedStructure | None = None
) -> tuple[list[Record], list[Arrays], int, list[str]]:
    """Rows and arrays of the RNA chains with at least ``min_length`` nucleotides with a frame.

    Args:
        chains: the file's RNA chains.
        rel_path: the file's path relative to the raw folder.
        min_length: minimal number of nucleotides with C4', O4', C3'.
        parsed: the protein reader's result for the same file, for its header facts (None: unknown).
    Returns:
        (records, arrays per record: atoms [L, 12, 3], atom_mask [L, 12], ..., number of short chains dropped,
        notes: one line per kept chain with bad or partial nucleotides).
    """
    records, parts, notes, short = [], [], [], 0
    for chain in chains:
        res_mask = chain.atom_mask[:, list(FRAME_ATOMS)].all(axis=1)
        modeled = int(res_mask.sum())
        if modeled < min_length:
            short += 1
            continue
        nan = float("nan")
        records.append(
            {
                "chain_id": chain.chain_id,
                "source_file": rel_path,
                "pdb_id": parsed.pdb_id if parsed else None,
                "entity_id": None,
                "length": chain.length,
                "modeled_length": modeled,
                "sequence": chain.sequence,
                "resolution": parsed.resolution if parsed else None,
                "method": parsed.method if parsed else None,
                "deposition_date": parsed.deposition_date if parsed else None,
                "oligomeric_detail": None,
                "num_chains_in_file": len(chains),
                "helix_frac": nan,
                "strand_frac": nan,
                "coil_frac": nan,
                "secondary_structure": "",
                "radius_of_gyration": radius_of_gyration(chain.atoms[:, 0], chain.atom_mask[:, 0]),
                "num_chain_breaks": chain.chain_breaks,
                "first_residue_number": int(chain.residue_numbers[0]),
                "last_residue_number": int(chain.residue_numbers[-1]),
                "has_insertion_codes": bool((chain.insertion_codes != "").any()),
                "molecule": "rna",
            }
        )
        parts.append(
            _arrays(chain.atoms, chain.atom_mask, chain.residue_numbers, chain.insertion_codes, chain.residue_index)
        )
        note = nucleotide_notes(chain)
        if note:
            notes.append(note)
    return records, parts, short, notes
