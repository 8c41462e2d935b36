"""Write backbone atoms as PDB files: proteins (N, CA, C, O) or any molecule type's named atoms (RNA).

One chain, residues numbered 1..L, optional MODEL/ENDMDL records for trajectories, a HEADER/CRYST1 preamble,
per-residue B-factors and REMARK lines. Inputs are numpy arrays or torch tensors (never imported here).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from flowbb.data.residues import ONE_TO_THREE, STANDARD_THREE_TO_ONE

_HEADER = "HEADER    GENERATED BACKBONE (FLOWBB)"
_CRYST1 = "CRYST1    1.000    1.000    1.000  90.00  90.00  90.00 P 1           1"


def _as_numpy(x: Any) -> np.ndarray:
    """float64 numpy copy of a numpy array or torch tensor (any device)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _residue_names(residue_name: str | Sequence[str], length: int) -> list[str]:
    """L residue names from one three-letter name, a one-letter sequence or a list of names."""
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
    atoms: Any,
    residue_name: str | Sequence[str] = "GLY",
    chain_id: str = "A",
    models: bool | None = None,
    atom_mask: Any = None,
    b_factors: Any = None,
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
        per_residue = (
            [tuple(atom_names)] * length if isinstance(atom_names[0], str) else [tuple(a) for a in atom_names]
        )
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
    atoms: Any,
    residue_name: str | Sequence[str] = "GLY",
    chain_id: str = "A",
    models: bool | None = None,
    atom_mask: Any = None,
    b_factors: Any = None,
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
    text = format_backbone_pdb(
        atoms, residue_name, chain_id, models, atom_mask, b_factors, remark, atom_names
    )
    path.write_text(text)
    return path
