"""Torch dataset over a processed store, and the padding collate function.

Items (one chain, L residues; only residues with a frame unless ``drop_unmodeled=False``), with A atoms per
residue in the layout of the chain's molecule type (:data:`flowbb.data.store.LAYOUTS`; protein: A = 4, N, CA, C, O;
RNA: A = 12, C4', O4', C3', C5', C2', C1', N, O3', O5', P, OP1, OP2):

    atoms          float32 [L, A, 3]  in A, centred at the centroid of the frame origins (CA / C4'), 0 where missing
    atom_mask      float32 [L, A]
    res_mask       float32 [L]        residue has its frame atoms (the first three: N, CA, C / C4', O4', C3')
    residue_index  int64   [L]        0-based from author numbering (gaps at missing residues and breaks)
    length         int64   []         L
    row            int64   []         metadata row id
    molecule       int64   []         molecule type code: index in :data:`flowbb.data.store.MOLECULES`
                                      (0 protein, 1 rna)

Batches (:func:`collate`) pad to the longest chain with zeros: atoms [B, L, A, 3], atom_mask [B, L, A],
res_mask [B, L], residue_index [B, L], lengths [B], row [B], molecule [B]. A batch holds one molecule type.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from flowbb.data.store import LAYOUTS, MOLECULES, ProcessedStore


class ProteinChainDataset(torch.utils.data.Dataset):
    """Chains ``rows`` of a processed store (protein or RNA chains: each item in its molecule type's layout).

    Args:
        store: a :class:`ProcessedStore` or its folder.
        rows: metadata row ids to expose (None: all).
        center: centre each chain at the centroid of its frame origins (CA / C4').
        drop_unmodeled: leave out residues lacking a frame atom (their positions carry no frame).
    """

    def __init__(
        self,
        store: ProcessedStore | str | Path,
        rows: Sequence[int] | np.ndarray | None = None,
        center: bool = True,
        drop_unmodeled: bool = True,
    ) -> None:
        self.store = store if isinstance(store, ProcessedStore) else ProcessedStore(store)
        self.rows = np.arange(len(self.store)) if rows is None else np.asarray(rows, dtype=np.int64)
        self.center = center
        self.drop_unmodeled = drop_unmodeled
        column = "modeled_length" if drop_unmodeled else "length"
        self.lengths = self.store.metadata[column].to_numpy(np.int64)[self.rows]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        row = int(self.rows[index])
        molecule = self.store.molecule(row)
        origin = LAYOUTS[molecule].origin
        arrays = self.store.chain(row)
        atoms = arrays["atoms"].astype(np.float32)
        atom_mask = arrays["atom_mask"].astype(bool)
        residue_index = arrays["residue_index"].astype(np.int64)
        res_mask = atom_mask[:, :3].all(axis=1)
        if self.drop_unmodeled:
            atoms, atom_mask, residue_index, res_mask = (
                atoms[res_mask],
                atom_mask[res_mask],
                residue_index[res_mask],
                res_mask[res_mask],
            )
            if len(residue_index):
                residue_index = residue_index - residue_index[0]
        if self.center:
            origin_present = atom_mask[:, origin]
            if origin_present.any():
                atoms = atoms - atoms[origin_present, origin].mean(axis=0)
            atoms = np.where(atom_mask[..., None], atoms, 0.0).astype(np.float32)
        return {
            "atoms": torch.from_numpy(np.ascontiguousarray(atoms)),
            "atom_mask": torch.from_numpy(atom_mask.astype(np.float32)),
            "res_mask": torch.from_numpy(res_mask.astype(np.float32)),
            "residue_index": torch.from_numpy(residue_index),
            "length": torch.tensor(len(atoms), dtype=torch.long),
            "row": torch.tensor(row, dtype=torch.long),
            "molecule": torch.tensor(MOLECULES.index(molecule), dtype=torch.long),
        }


def collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Pad a list of items to the longest chain (zeros) and stack; see the module docstring for shapes."""
    if not items:
        raise ValueError("cannot collate an empty batch")
    max_len = max(int(item["atoms"].shape[0]) for item in items)
    batch = len(items)
    num_atoms = {int(item["atoms"].shape[1]) for item in items}
    if len(num_atoms) != 1:
        raise ValueError(f"cannot collate chains of different molecule types (atoms per residue {sorted(num_atoms)})")
    atoms = torch.zeros(batch, max_len, num_atoms.pop(), 3, dtype=torch.float32)
    atom_mask = torch.zeros(batch, max_len, atoms.shape[2], dtype=torch.float32)
    res_mask = torch.zeros(batch, max_len, dtype=torch.float32)
    residue_index = torch.zeros(batch, max_len, dtype=torch.long)
    for b, item in enumerate(items):
        n = int(item["atoms"].shape[0])
        atoms[b, :n] = item["atoms"]
        atom_mask[b, :n] = item["atom_mask"]
        res_mask[b, :n] = item["res_mask"]
        residue_index[b, :n] = item["residue_index"]
    return {
        "atoms": atoms,
        "atom_mask": atom_mask,
        "res_mask": res_mask,
        "residue_index": residue_index,
        "lengths": torch.stack([item["length"] for item in items]),
        "row": torch.stack([item["row"] for item in items]),
        "molecule": torch.stack([item.get("molecule", torch.tensor(0)) for item in items]),
    }
