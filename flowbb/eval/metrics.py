"""Per-backbone metrics: self-consistency (scRMSD, scTM, pLDDT), secondary structure, geometry checks.

Kabsch/RMSD come from :mod:`flowbb.geometry.align`, geometry checks from :mod:`flowbb.geometry.checks`,
DSSP from :mod:`flowbb.data.secondary_structure`; TM-scores from :mod:`flowbb.eval.tm`.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from flowbb.eval.folding import FoldedStructure
from flowbb.eval.tm import tm_align
from flowbb.geometry.align import rmsd
from flowbb.geometry.checks import ca_ca_deviation, count_clashes, radius_of_gyration


def sc_rmsd(sample_ca: np.ndarray, folded_ca: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Self-consistency RMSD: Kabsch superposition on CA, then a true root-mean-square (Å).

    Args:
        sample_ca: ``[L, 3]`` CA of the designed backbone.
        folded_ca: ``[L, 3]`` CA predicted for one designed sequence (same residue order).
        mask: ``[L]`` residues to use (default: all).
    """
    if sample_ca.shape != folded_ca.shape:
        raise ValueError(f"sc_rmsd: shapes differ {sample_ca.shape} vs {folded_ca.shape}")
    x = torch.as_tensor(np.asarray(folded_ca), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(sample_ca), dtype=torch.float64)
    m = None if mask is None else torch.as_tensor(np.asarray(mask, dtype=bool))
    return float(rmsd(x, y, m, align=True))


def self_consistency(
    sample_ca: np.ndarray, folded: list[FoldedStructure], mask: np.ndarray | None = None
) -> list[dict[str, float]]:
    """scRMSD / scTM / pLDDT / pTM of each folded design against the sample backbone.

    Args:
        sample_ca: ``[L, 3]`` CA of the sample.
        folded: predictions for the sample's designed sequences (each of length L).
        mask: ``[L]`` residues of the sample with coordinates (default: all).
    Returns:
        one dict per design: ``sc_rmsd`` (Å), ``sc_tm`` (TM-align, normalised by the sample's length),
        ``plddt`` (mean, 0-100), ``ptm``.
    """
    m = np.ones(len(sample_ca), dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    out = []
    for f in folded:
        ca = f.atoms[:, 1]
        if len(ca) != len(sample_ca):
            raise ValueError(f"folded structure has {len(ca)} residues, sample has {len(sample_ca)}")
        out.append(
            {
                "sc_rmsd": sc_rmsd(sample_ca, ca, m),
                "sc_tm": tm_align(sample_ca[m], ca[m]).tm_norm_1,
                "plddt": f.mean_plddt,
                "ptm": f.ptm,
            }
        )
    return out


def summarize_designs(
    per_seq: list[dict[str, float]], designable_rmsd: float = 2.0
) -> dict[str, float | int | bool]:
    """Per-sample self-consistency summary.

    Args:
        per_seq: output of :func:`self_consistency`.
        designable_rmsd: threshold (Å) on the best scRMSD.
    Returns:
        ``sc_rmsd`` (min over designs), ``sc_tm`` (max), ``best_seq_idx`` (argmin scRMSD), ``best_sc_tm`` and
        ``best_plddt`` (of that design), ``mean_plddt`` (over designs), ``designable`` (min scRMSD < threshold).
    """
    if not per_seq:
        raise ValueError("summarize_designs: no designs")
    rms = np.array([p["sc_rmsd"] for p in per_seq])
    best = int(np.nanargmin(rms)) if np.isfinite(rms).any() else 0
    return {
        "sc_rmsd": float(np.nanmin(rms)) if np.isfinite(rms).any() else math.nan,
        "sc_tm": float(max(p["sc_tm"] for p in per_seq)),
        "best_seq_idx": best,
        "best_sc_tm": float(per_seq[best]["sc_tm"]),
        "best_plddt": float(per_seq[best]["plddt"]),
        "mean_plddt": float(np.mean([p["plddt"] for p in per_seq])),
        "designable": bool(np.nanmin(rms) < designable_rmsd) if np.isfinite(rms).any() else False,
    }


def backbone_metrics(
    atoms: np.ndarray, atom_mask: np.ndarray, sequence: str | None = None, clash_threshold: float = 3.0
) -> dict[str, float | int | str]:
    """Secondary structure and geometry checks of one backbone.

    Args:
        atoms: ``[L, 4, 3]`` N, CA, C, O (Å).
        atom_mask: ``[L, 4]`` bool.
        sequence: one-letter sequence (prolines are no H-bond donors in DSSP); ``None`` for backbones.
        clash_threshold: CA-CA distance (Å) below which residues at least 3 apart clash.
    Returns:
        ``secondary_structure`` (DSSP 3-state string, H/E/-), ``helix_frac``, ``strand_frac``, ``coil_frac``
        (over residues with all four atoms),
        ``radius_of_gyration`` (Å), ``ca_ca_deviation`` (mean |d - 3.8| Å), ``num_clashes``.
    """
    from flowbb.data.secondary_structure import assign_dssp, ss_fractions

    atoms = np.asarray(atoms, dtype=np.float32)
    atom_mask = np.asarray(atom_mask, dtype=bool)
    full = atom_mask.all(-1)
    ss = assign_dssp(atoms, full, sequence=sequence)
    fr = ss_fractions(ss, full)
    ca = torch.as_tensor(atoms[:, 1], dtype=torch.float64)
    m = torch.as_tensor(atom_mask[:, 1])
    return {
        "secondary_structure": ss,
        "helix_frac": float(fr["helix_frac"]),
        "strand_frac": float(fr["strand_frac"]),
        "coil_frac": float(fr["coil_frac"]),
        "radius_of_gyration": float(radius_of_gyration(ca, m)),
        "ca_ca_deviation": float(ca_ca_deviation(ca, m)),
        "num_clashes": int(count_clashes(ca, m, threshold=clash_threshold)),
    }
