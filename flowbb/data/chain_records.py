"""Per-chain records of the preprocessing pipeline: one metadata row + per-residue arrays per kept chain.

:func:`protein_records` and :func:`rna_records` turn the chains read from one file
(:func:`flowbb.data.structure_io.read.read_chains`, :func:`flowbb.data.nucleic.read_rna_chains`) into metadata rows
(the fields :data:`flowbb.data.store.RECORD_COLUMNS` of the table :data:`flowbb.data.store.METADATA_COLUMNS`) and
arrays in the layout of
:data:`flowbb.data.store.LAYOUTS`. Used by :func:`flowbb.data.preprocess.process_file`.

One function builds the row of every molecule type (:func:`chain_record`). RNA rows: ``molecule`` 'rna';
``modeled_length`` counts nucleotides with C4', O4' and C3' (a frame); ``radius_of_gyration`` is over C4'
(:func:`flowbb.geometry.checks.radius_of_gyration` on the layout's origin atom, CA or C4'); DSSP fractions are NaN and ``secondary_structure`` empty (DSSP is for
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
from flowbb.data.store import LAYOUTS
from flowbb.data.structure_io.read import ChainData, ParsedStructure

Record = dict[str, Any]
Arrays = dict[str, np.ndarray]


def origin_radius_of_gyration(atoms: np.ndarray, atom_mask: np.ndarray, molecule: str) -> float:
    """Radius of gyration (A) of the chain's frame-origin atoms present (CA, C4': ``LAYOUTS[molecule].origin``).

    Args:
        atoms: [L, A, 3]; atom_mask: [L, A] bool; molecule: a key of :data:`flowbb.data.store.LAYOUTS`.
    Returns:
        :func:`flowbb.geometry.checks.radius_of_gyration` in float64; NaN when no origin atom is present.
    """
    import torch  # here, not at import: only the processing of a chain needs it

    from flowbb.geometry.checks import radius_of_gyration

    origin = LAYOUTS[molecule].origin
    points = torch.from_numpy(np.asarray(atoms[:, origin], dtype=np.float64))
    mask = torch.from_numpy(np.asarray(atom_mask[:, origin], dtype=bool))
    return float(radius_of_gyration(points, mask))


def chain_record(
    chain: ChainData | RNAChain,
    molecule: str,
    rel_path: str,
    modeled: int,
    parsed: ParsedStructure | None,
    num_chains: int,
    secondary_structure: str = "",
    entity_id: str | None = None,
    oligomeric_detail: str | None = None,
) -> Record:
    """The metadata row of one kept chain: the fields :data:`flowbb.data.store.RECORD_COLUMNS`.

    Args:
        chain: the chain as read (``atoms [L, A, 3]``, ``atom_mask [L, A]``, numbering, breaks, sequence).
        molecule: 'protein' or 'rna'.
        rel_path: the file's path relative to the raw folder.
        modeled: residues with a frame.
        parsed: the protein reader's result for the file, for its header facts (None: unknown).
        num_chains: chains of this molecule type in the file.
        secondary_structure: 3-state DSSP string ('' when not assigned: its fractions are NaN).
        entity_id, oligomeric_detail: when known.
    """
    mask = chain.atom_mask[:, :3].all(axis=1)
    fractions = (
        ss_fractions(secondary_structure, mask)
        if secondary_structure
        else dict.fromkeys(("helix_frac", "strand_frac", "coil_frac"), float("nan"))
    )
    record = {
        "chain_id": chain.chain_id,
        "source_file": rel_path,
        "pdb_id": parsed.pdb_id if parsed else None,
        "entity_id": entity_id,
        "length": chain.length,
        "modeled_length": modeled,
        "sequence": chain.sequence,
        "resolution": parsed.resolution if parsed else None,
        "method": parsed.method if parsed else None,
        "deposition_date": parsed.deposition_date if parsed else None,
        "oligomeric_detail": oligomeric_detail,
        "num_chains_in_file": num_chains,
        **fractions,
        "secondary_structure": secondary_structure,
        "radius_of_gyration": origin_radius_of_gyration(chain.atoms, chain.atom_mask, molecule),
        "num_chain_breaks": chain.chain_breaks,
        "first_residue_number": int(chain.residue_numbers[0]),
        "last_residue_number": int(chain.residue_numbers[-1]),
        "has_insertion_codes": bool((chain.insertion_codes != "").any()),
        "molecule": molecule,
    }
    return record  # its keys are RECORD_COLUMNS in order (tests/data/test_preprocess.py checks it)


def _arrays(chain: ChainData | RNAChain) -> Arrays:
    """One chain's per-residue arrays in the store's dtypes (:data:`flowbb.data.store.LAYOUTS`)."""
    return {
        "atoms": chain.atoms.astype(np.float32),
        "atom_mask": chain.atom_mask.astype(bool),
        "residue_numbers": chain.residue_numbers.astype(np.int32),
        "insertion_codes": np.char.encode(chain.insertion_codes.astype(str), "ascii").astype("S1"),
        "residue_index": chain.residue_index.astype(np.int32),
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
        ss = assign_dssp(chain.atoms, chain.atom_mask, chain.sequence, method=dssp_method)
        records.append(
            chain_record(
                chain,
                "protein",
                rel_path,
                modeled,
                parsed,
                parsed.num_protein_chains,
                ss,
                chain.entity_id,
                parsed.oligomeric_detail,
            )
        )
        parts.append(_arrays(chain))
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
        records.append(chain_record(chain, "rna", rel_path, modeled, parsed, len(chains)))
        parts.append(_arrays(chain))
        note = nucleotide_notes(chain)
        if note:
            notes.append(note)
    return records, parts, short, notes
