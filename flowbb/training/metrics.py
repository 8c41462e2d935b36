"""Geometry metrics of sampled backbones, for validation during training and evaluation: proteins
(:func:`backbone_metrics`, N, CA, C, O) and RNA (:func:`rna_backbone_metrics`, the 12 rebuilt atoms of
:mod:`flowbb.geometry.rna`). :meth:`flowbb.molecules.base.Molecule.sample_metrics` picks the one of a molecule type."""

from __future__ import annotations

import math

import torch

from flowbb.geometry import rna
from flowbb.geometry.checks import (
    ca_ca_deviation,
    ca_ca_distances,
    count_clashes,
    folded_rg,
    radius_of_gyration,
)

Tensor = torch.Tensor


def backbone_metrics(atoms: Tensor, res_mask: Tensor) -> list[dict[str, float]]:
    """Per-sample geometry of backbones.

    Args:
        atoms: ``[B, L, 4, 3]`` N, CA, C, O in Å.
        res_mask: ``[B, L]`` (1 for real residues).
    Returns:
        one dict per sample with ``length``, ``ca_ca_mean`` (Å), ``ca_ca_deviation`` (mean |d - 3.8| Å),
        ``clashes`` (CA pairs closer than 3 Å, |i - j| >= 3), ``rg`` (Å), ``rg_ratio`` (Rg over the
        folded-protein scaling 2.2 L^0.38 Å), ``helix_frac``, ``strand_frac``, ``coil_frac`` (DSSP, 3 states).
    """
    from flowbb.data.secondary_structure import assign_dssp, ss_fractions

    if atoms.dim() != 4 or atoms.shape[-2:] != (4, 3) or res_mask.shape != atoms.shape[:2]:
        raise ValueError(f"backbone_metrics: expected atoms [B, L, 4, 3] and res_mask [B, L], got "
                         f"{tuple(atoms.shape)} and {tuple(res_mask.shape)}")
    atoms = atoms.detach().float().cpu()
    mask = res_mask.detach().float().cpu()
    ca = atoms[..., 1, :]
    dev = ca_ca_deviation(ca, mask)
    dist, valid = ca_ca_distances(ca, mask)
    mean_d = (dist * valid).sum(-1) / valid.sum(-1).clamp_min(1)
    clashes = count_clashes(ca, mask)
    rg = radius_of_gyration(ca, mask)
    rows = []
    for b in range(atoms.shape[0]):
        sel = mask[b].bool()
        n = int(sel.sum())
        ss = assign_dssp(atoms[b][sel], mask[b][sel])
        fr = ss_fractions(ss)
        rows.append({
            "length": float(n),
            "ca_ca_mean": float(mean_d[b]),
            "ca_ca_deviation": float(dev[b]),
            "clashes": float(clashes[b]),
            "rg": float(rg[b]),
            "rg_ratio": float(rg[b]) / folded_rg(n),
            "helix_frac": float(fr["helix_frac"]),
            "strand_frac": float(fr["strand_frac"]),
            "coil_frac": float(fr["coil_frac"]),
        })
    return rows


def mean_metrics(rows: list[dict[str, float]], prefix: str = "") -> dict[str, float]:
    """Means over samples of every key of :func:`backbone_metrics` rows (``length`` excluded)."""
    if not rows:
        return {}
    keys = [k for k in rows[0] if k != "length"]
    return {f"{prefix}{k}": sum(r[k] for r in rows) / len(rows) for k in keys}


#: consecutive C4'-C4' distance (Å) of real RNA: median over the 199 chains of ../shared/data/rna (5 % and 95 %
#: quantiles 5.23 and 6.79 Å; 79 % of the distances lie in :data:`RNA_C4_RANGE`)
RNA_C4_C4 = 6.13
RNA_C4_RANGE = (5.5, 6.5)
#: radius of gyration (C4', Å) of real RNA chains of L nucleotides: RNA_RG_PREFACTOR * L^(1/3), the compact-RNA
#: scaling of Hyeon, Dima & Thirumalai (Structure 2006; 5.5 there) with the prefactor refitted as the median of
#: Rg / L^(1/3) over the 199 chains of ../shared/data/rna (40-150 nt)
RNA_RG_PREFACTOR = 5.94


def rna_backbone_metrics(atoms: Tensor, res_mask: Tensor, atom_mask: Tensor | None = None,
                         link_break: float | None = None) -> list[dict[str, float]]:
    """Per-sample geometry of RNA backbones (rebuilt 12-atom nucleotides, consecutive along L).

    Args:
        atoms: ``[B, L, 12, 3]`` in :data:`flowbb.geometry.rna.ATOM_ORDER` (Å).
        res_mask: ``[B, L]`` (1 for real nucleotides).
        atom_mask: optional ``[B, L, 12]`` atom presence (real chains; samples have every atom).
        link_break: O3'-P+ beyond this (Å) is a chain break, not a bond (real chains: 2.0; samples: None).
    Returns:
        one dict per sample with ``length``, ``c4_c4_mean`` (consecutive C4'-C4', Å), ``c4_c4_deviation``
        (mean |d - 6.13| Å), ``c4_c4_in_range`` (fraction of d in 5.5-6.5 Å), ``clashes`` (C4' pairs closer
        than 3.5 Å, |i - j| >= 2), ``rg`` (C4', Å), ``rg_ratio`` (Rg over the real-set scaling
        :data:`RNA_RG_PREFACTOR` L^(1/3)), ``bond_deviation`` (mean |length - real median| over the bonds of
        :data:`flowbb.geometry.rna.BONDS`, Å), ``angle_deviation`` (the same over
        :data:`flowbb.geometry.rna.ANGLES`, degrees) and ``o3p_mean`` (the O3'(i)-P(i+1) link, real 1.61 Å:
        the one bond a rebuild does not fix).
    """
    if atoms.dim() != 4 or atoms.shape[-2:] != (rna.NUM_ATOMS, 3) or res_mask.shape != atoms.shape[:2]:
        raise ValueError(f"rna_backbone_metrics: expected atoms [B, L, {rna.NUM_ATOMS}, 3] and res_mask [B, L], "
                         f"got {tuple(atoms.shape)} and {tuple(res_mask.shape)}")
    atoms = atoms.detach().double().cpu()
    mask = res_mask.detach().double().cpu()
    c4 = atoms[..., rna.ATOM_INDEX["C4'"], :]
    dist, valid = ca_ca_distances(c4, mask)
    v = valid.double()
    lo, hi = RNA_C4_RANGE
    n_pairs = v.sum(-1).clamp_min(1)
    clashes = count_clashes(c4, mask, threshold=rna.C4_CLASH_DISTANCE, min_seq_sep=rna.C4_CLASH_MIN_SEQ_SEP)
    rg = radius_of_gyration(c4, mask)
    present = mask.bool()[..., None].expand(*mask.shape, rna.NUM_ATOMS)
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
    rows = []
    for b in range(atoms.shape[0]):
        n = int(mask[b].sum())
        rows.append({
            "length": float(n),
            "c4_c4_mean": float((dist[b] * v[b]).sum() / n_pairs[b]),
            "c4_c4_deviation": float(((dist[b] - RNA_C4_C4).abs() * v[b]).sum() / n_pairs[b]),
            "c4_c4_in_range": float((((dist[b] >= lo) & (dist[b] <= hi)).double() * v[b]).sum() / n_pairs[b]),
            "clashes": float(clashes[b]),
            "rg": float(rg[b]),
            "rg_ratio": float(rg[b]) / (RNA_RG_PREFACTOR * math.pow(max(n, 1), 1.0 / 3.0)),
            "bond_deviation": float(bond_dev[b]),
            "angle_deviation": float(angle_dev[b]),
            "o3p_mean": float(o3p[b]),
        })
    return rows
