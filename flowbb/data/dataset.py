"""Torch dataset over a processed store, and the padding collate function.

Items (one chain, L residues; only residues with N, CA and C unless ``drop_unmodeled=False``):

    atoms          float32 [L, 4, 3]  N, CA, C, O in A, centred at the CA centroid, 0 where missing
    atom_mask      float32 [L, 4]
    res_mask       float32 [L]        residue has N, CA, C
    residue_index  int64   [L]        0-based from author numbering (gaps at missing residues and breaks)
    length         int64   []         L
    row            int64   []         metadata row id

Batches (:func:`collate`) pad to the longest chain with zeros: atoms [B, L, 4, 3], atom_mask [B, L, 4],
res_mask [B, L], residue_index [B, L], lengths [B], row [B].
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from flowbb.data.store import ProcessedStore


class ProteinChainDataset(torch.utils.data.Dataset):
    """Chains ``rows`` of a processed store.

    Args:
        store: a :class:`ProcessedStore` or its folder.
        rows: metadata row ids to expose (None: all).
        center: centre each chain at the centroid of its CA atoms.
        drop_unmodeled: leave out residues lacking N, CA or C (their positions carry no frame).
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
            ca_present = atom_mask[:, 1]
            if ca_present.any():
                atoms = atoms - atoms[ca_present, 1].mean(axis=0)
            atoms = np.where(atom_mask[..., None], atoms, 0.0).astype(np.float32)
        return {
            "atoms": torch.from_numpy(np.ascontiguousarray(atoms)),
            "atom_mask": torch.from_numpy(atom_mask.astype(np.float32)),
            "res_mask": torch.from_numpy(res_mask.astype(np.float32)),
            "residue_index": torch.from_numpy(residue_index),
            "length": torch.tensor(len(atoms), dtype=torch.long),
            "row": torch.tensor(row, dtype=torch.long),
        }


def collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Pad a list of items to the longest chain (zeros) and stack; see the module docstring for shapes."""
    if not items:
        raise ValueError("cannot collate an empty batch")
    max_len = max(int(item["atoms"].shape[0]) for item in items)
    batch = len(items)
    atoms = torch.zeros(batch, max_len, 4, 3, dtype=torch.float32)
    atom_mask = torch.zeros(batch, max_len, 4, dtype=torch.float32)
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
    }
