"""Per-backbone metrics: self-consistency (scRMSD, scTM, pLDDT) and the geometry of sampled or real backbones.

Geometry: :func:`backbone_metrics` (proteins: the trace report on CA plus DSSP) and :func:`rna_backbone_metrics`
(RNA: the trace report on C4' plus bond and angle geometry), both on batches and both with the key names of
:func:`flowbb.geometry.report.trace_report`; used by validation (:meth:`flowbb.molecules.base.Molecule.sample_metrics`),
the evaluation runner, the learning benchmark (:mod:`flowbb.eval.sample_quality`) and ``scripts/geometry_report.py``.
Kabsch/RMSD come from :mod:`flowbb.geometry.align`, DSSP from :mod:`flowbb.data.secondary_structure`, TM-scores
from :mod:`flowbb.eval.tm`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import torch

from flowbb.data.secondary_structure import assign_dssp, ss_fractions
from flowbb.eval.folding import FoldedStructure
from flowbb.eval.tm import tm_align
from flowbb.geometry import rna
from flowbb.geometry.align import rmsd
from flowbb.geometry.report import PROTEIN_TRACE, RNA_TRACE, report_rows, trace_report

Tensor = torch.Tensor


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
    atoms: Tensor | np.ndarray,
    mask: Tensor | np.ndarray,
    sequences: Sequence[str | None] | None = None,
    clash_distance: float = PROTEIN_TRACE.clash_distance,
) -> list[dict[str, float | str]]:
    """Geometry of protein backbones: the trace report on CA plus DSSP secondary structure.

    Args:
        atoms: ``[B, L, 4, 3]`` N, CA, C, O (Å), torch or numpy.
        mask: ``[B, L]`` residue mask or ``[B, L, 4]`` atom mask (the trace uses residues with CA, DSSP residues
            with all four atoms).
        sequences: ``B`` one-letter sequences (prolines are no H-bond donors in DSSP), entries or all None for
            backbones without one.
        clash_distance: CA-CA distance (Å) below which residues at least 3 apart clash.
    Returns:
        one dict per chain: the keys of :func:`flowbb.geometry.report.trace_report` with bond ``ca_ca``
        (``length``, ``ca_ca_mean``, ``ca_ca_deviation``, ``clashes``, ``clashes_per_100``, ``rg``, ``rg_ratio``),
        then ``helix_frac``, ``strand_frac``, ``coil_frac`` (over residues with all four atoms) and
        ``secondary_structure`` (DSSP 3-state string over the L positions, H/E/-).
    """
    atoms = torch.as_tensor(atoms).detach().to("cpu", torch.float64)
    mask = torch.as_tensor(mask).detach().to("cpu").bool()
    if atoms.dim() != 4 or atoms.shape[-2:] != (4, 3) or mask.shape not in (atoms.shape[:2], atoms.shape[:3]):
        raise ValueError(f"backbone_metrics: expected atoms [B, L, 4, 3] and mask [B, L] or [B, L, 4], got "
                         f"{tuple(atoms.shape)} and {tuple(mask.shape)}")
    atom_mask = mask if mask.dim() == 3 else mask[..., None].expand(*mask.shape, 4)
    if sequences is None:
        sequences = [None] * atoms.shape[0]
    if len(sequences) != atoms.shape[0]:
        raise ValueError(f"backbone_metrics: {len(sequences)} sequences for {atoms.shape[0]} chains")
    spec = dataclasses.replace(PROTEIN_TRACE, clash_distance=clash_distance)
    rows: list[dict[str, float | str]] = list(report_rows(trace_report(atoms[..., 1, :], atom_mask[..., 1], spec)))
    full = atom_mask.all(-1).numpy()
    for row, chain, chain_mask, sequence in zip(rows, atoms.numpy(), full, sequences, strict=True):
        ss = assign_dssp(chain, chain_mask, sequence=sequence)
        row.update(ss_fractions(ss, chain_mask))
        row["secondary_structure"] = ss
    return rows


def rna_backbone_metrics(atoms: Tensor, res_mask: Tensor, atom_mask: Tensor | None = None,
                         link_break: float | None = None) -> list[dict[str, float]]:
    """Geometry of RNA backbones (rebuilt 12-atom nucleotides, consecutive along L): the trace report on C4' plus
    bond and angle geometry.

    Args:
        atoms: ``[B, L, 12, 3]`` in :data:`flowbb.geometry.rna.ATOM_ORDER` (Å).
        res_mask: ``[B, L]`` (1 for real nucleotides).
        atom_mask: optional ``[B, L, 12]`` atom presence (real chains; samples have every atom).
        link_break: O3'-P+ beyond this (Å) is a chain break, not a bond (real chains: 2.0; samples: None).
    Returns:
        one dict per chain: the keys of :func:`flowbb.geometry.report.trace_report` with bond ``c4_c4``
        (:data:`flowbb.geometry.report.RNA_TRACE`: ``length``, ``c4_c4_mean``, ``c4_c4_deviation`` (mean |d - 6.13|
        Å), ``c4_c4_in_range`` (fraction of d in 5.5-6.5 Å), ``clashes`` (C4' pairs closer than 3.5 Å,
        |i - j| >= 2), ``clashes_per_100``, ``rg``, ``rg_ratio`` (over 5.94 L^(1/3))), then ``bond_deviation`` (mean
        |length - real median| over the bonds of :data:`flowbb.geometry.rna.BONDS`, Å), ``angle_deviation`` (the
        same over :data:`flowbb.geometry.rna.ANGLES`, degrees) and ``o3p_mean`` (the O3'(i)-P(i+1) link, real
        1.61 Å: the one bond a rebuild does not fix).
    """
    if atoms.dim() != 4 or atoms.shape[-2:] != (rna.NUM_ATOMS, 3) or res_mask.shape != atoms.shape[:2]:
        raise ValueError(f"rna_backbone_metrics: expected atoms [B, L, {rna.NUM_ATOMS}, 3] and res_mask [B, L], "
                         f"got {tuple(atoms.shape)} and {tuple(res_mask.shape)}")
    atoms = atoms.detach().double().cpu()
    mask = res_mask.detach().cpu().bool()
    rows = report_rows(trace_report(atoms[..., rna.ATOM_INDEX["C4'"], :], mask, RNA_TRACE))
    present = mask[..., None].expand(*mask.shape, rna.NUM_ATOMS)
    if atom_mask is not None:
        present = present & atom_mask.detach().bool().cpu()
    lengths, bmask, angles, amask = rna.bond_geometry(atoms, present, link_break)
    ideal_b = torch.tensor([rna.REAL_BOND_MEDIANS["-".join(b)] for b in rna.BONDS], dtype=torch.float64)
    ideal_a = torch.tensor([rna.REAL_ANGLE_MEDIANS["-".join(a)] for a in rna.ANGLES], dtype=torch.float64)
    bm, am = bmask.double(), amask.double()
    zero = torch.zeros((), dtype=torch.float64)
    bond_dev = torch.where(bmask, (lengths - ideal_b).abs(), zero).sum((-1, -2)) / bm.sum((-1, -2)).clamp_min(1)
    angle_dev = torch.where(amask, (angles - ideal_a).abs(), zero).sum((-1, -2)) / am.sum((-1, -2)).clamp_min(1)
    link = len(rna.BONDS) - 1  # O3'-P+
    o3p = torch.where(bmask[..., link], lengths[..., link], zero).sum(-1) / bm[..., link].sum(-1).clamp_min(1)
    for b, row in enumerate(rows):
        row.update(bond_deviation=float(bond_dev[b]), angle_deviation=float(angle_dev[b]), o3p_mean=float(o3p[b]))
    return rows
