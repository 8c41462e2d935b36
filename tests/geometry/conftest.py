"""Real backbones of ``../shared/data/pdb/ddg`` (or the bundled few: ``core_ddg_files``), parsed once per session
with biotite directly."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import biotite.structure as struc
import numpy as np
import pytest
from biotite.structure.io import pdb

BACKBONE = ("N", "CA", "C", "O")


@dataclass
class Chain:
    """One chain: ``atoms`` float64 [L, 4, 3] (N, CA, C, O), residues having all four atoms, in file order."""

    name: str
    atoms: np.ndarray
    res_ids: np.ndarray


def parse_backbone_chains(path: Path) -> list[Chain]:
    """First model, first altloc, amino-acid residues that have N, CA, C and O; one entry per chain."""
    arr = pdb.PDBFile.read(str(path)).get_structure(model=1, altloc="first")
    arr = arr[np.isin(arr.atom_name, BACKBONE)]
    arr = arr[struc.filter_amino_acids(arr)]
    chains = []
    for chain_id in np.unique(arr.chain_id):
        ch = arr[arr.chain_id == chain_id]
        starts = struc.get_residue_starts(ch)
        res_pos = np.searchsorted(starts, np.arange(ch.array_length()), side="right") - 1
        first = np.full((len(starts), 4), -1)
        for k, name in enumerate(BACKBONE):
            hits = np.nonzero(ch.atom_name == name)[0][::-1]  # reversed: the first occurrence wins
            first[res_pos[hits], k] = hits
        keep = (first >= 0).all(axis=1)
        if keep.sum() >= 2:
            coords = ch.coord[first[keep]].astype(np.float64)  # [L, 4, 3]
            chains.append(Chain(f"{path.stem}:{chain_id}", coords, ch.res_id[starts[keep]]))
    return chains


@pytest.fixture(scope="session")
def ddg_chains(core_ddg_files: list[Path]) -> list[Chain]:
    """Every protein chain of every ddg file (fails when the folder is empty)."""
    assert len(core_ddg_files) > 0, "no ddg PDB files found"
    chains = [c for f in core_ddg_files for c in parse_backbone_chains(f)]
    assert len(chains) >= len(core_ddg_files)
    return chains
