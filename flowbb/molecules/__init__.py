"""Molecule types: one module per type (:mod:`flowbb.molecules.protein`, :mod:`flowbb.molecules.rna`), each a
:class:`~flowbb.molecules.base.Molecule` (frames and torsions from atoms, torsion-head size, atom rebuild,
auxiliary losses).

This package's ``__init__`` imports no torch, so that the data layer (preprocessing workers) can use
:data:`MOLECULE_NAMES`, the one table of molecule codes: a batch's ``molecule [B]`` holds indices into it.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowbb.molecules.base import Molecule

#: molecule type names; position = the code in batches (``batch["molecule"]``) and dataset items
MOLECULE_NAMES: tuple[str, ...] = ("protein", "rna")
#: index of the trace atom (one per residue: CA, C4') in the stored atoms of each type
TRACE_ATOMS: dict[str, int] = {"protein": 1, "rna": 0}
_CLASSES = {"protein": ("flowbb.molecules.protein", "Protein"), "rna": ("flowbb.molecules.rna", "RNA")}
_INSTANCES: dict[str, Molecule] = {}


def get_molecule(key: str | int) -> Molecule:
    """The :class:`Molecule` of a name ('protein', 'rna') or code (0, 1)."""
    name = MOLECULE_NAMES[key] if isinstance(key, int) else key
    if name not in _CLASSES:
        raise ValueError(f"unknown molecule type {key!r} (known: {list(MOLECULE_NAMES)})")
    if name not in _INSTANCES:
        module, cls = _CLASSES[name]
        _INSTANCES[name] = getattr(importlib.import_module(module), cls)()
    return _INSTANCES[name]


def molecule_of(batch: Mapping[str, Any]) -> Molecule:
    """The molecule type of a batch: from its ``molecule [B]`` codes (one type per batch), protein without them.

    Raises:
        ValueError: a batch mixing molecule types.
    """
    codes = batch.get("molecule")
    if codes is None:
        return get_molecule("protein")
    unique = sorted({int(c) for c in codes.reshape(-1).tolist()})
    if len(unique) != 1:
        raise ValueError(f"a batch holds one molecule type, got {[MOLECULE_NAMES[c] for c in unique]}")
    return get_molecule(unique[0])


def molecule_of_config(cfg: Mapping[str, Any]) -> Molecule:
    """The molecule type a training config trains (e.g. the config stored in a checkpoint): ``data.molecule``
    (``protein`` where the data config has no such key), the one key that says it.

    Raises:
        ValueError: an unknown type, or a torsion head (``model.num_torsions``, default 1) that does not fit it.
    """
    data = cfg.get("data") or {}
    mol = get_molecule(str(data.get("molecule") or "protein"))
    heads = int((cfg.get("model") or {}).get("num_torsions", 1) or 1)
    if heads != mol.num_torsions:
        raise ValueError(f"data.molecule={mol.name} needs model.num_torsions={mol.num_torsions}, the config has "
                         f"{heads}")
    return mol
