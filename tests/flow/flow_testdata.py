"""Test data helpers for the flow tests: real backbones read with biotite, padded batches of frames."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import torch

from flowbb.geometry import rigid

BACKBONE = ("N", "CA", "C", "O")


def read_chain_backbones(path: Path) -> list[np.ndarray]:
    """Backbone ``[L, 4, 3]`` arrays (float64) of every protein chain of a PDB file, residues with all of
    N, CA, C, O only (first model, first altloc)."""
    import biotite.structure as struc
    from biotite.structure.io.pdb import PDBFile

    arr = PDBFile.read(str(path)).get_structure(model=1)
    arr = arr[struc.filter_amino_acids(arr) & ~arr.hetero]
    chains = []
    for chain_id in np.unique(arr.chain_id):
        ch = arr[arr.chain_id == chain_id]
        starts = struc.get_residue_starts(ch)
        bounds = list(starts) + [ch.array_length()]
        residues = []
        for s, e in itertools.pairwise(bounds):
            res = ch[s:e]
            coords = []
            for name in BACKBONE:
                hit = np.nonzero(res.atom_name == name)[0]
                if hit.size == 0:
                    break
                coords.append(res.coord[hit[0]])
            if len(coords) == 4:
                residues.append(np.stack(coords))
        if len(residues) >= 30:
            chains.append(np.stack(residues).astype(np.float64))
    return chains


def make_batch(
    backbones: list[np.ndarray], lengths: list[int], dtype: torch.dtype = torch.float64
) -> dict[str, torch.Tensor]:
    """Padded batch of crops ``backbones[i][:lengths[i]]``, centred at the CA centroid.

    Returns:
        dict with ``atoms [B, L, 4, 3]``, ``res_mask [B, L]``, ``residue_index [B, L]``,
        ``rots_1 [B, L, 3, 3]``, ``trans_1 [B, L, 3]`` (identity / zero at padding).
    """
    b, l = len(lengths), max(lengths)
    atoms = torch.zeros(b, l, 4, 3, dtype=dtype)
    mask = torch.zeros(b, l, dtype=dtype)
    for i, (bb, n) in enumerate(zip(backbones, lengths)):
        if bb.shape[0] < n:
            raise ValueError(f"chain {i} has {bb.shape[0]} residues < {n}")
        x = torch.as_tensor(bb[:n], dtype=dtype)
        atoms[i, :n] = x - x[:, 1].mean(0)
        mask[i, :n] = 1.0
    rots, trans = rigid.frames_from_backbone(atoms[..., 0, :], atoms[..., 1, :], atoms[..., 2, :])
    eye = torch.eye(3, dtype=dtype)
    rots = torch.where(mask.bool()[..., None, None], rots, eye)
    residue_index = torch.arange(l).expand(b, l).clone()
    return {
        "atoms": atoms,
        "res_mask": mask,
        "residue_index": residue_index,
        "rots_1": rots,
        "trans_1": trans,
    }
