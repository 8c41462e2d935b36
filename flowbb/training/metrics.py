"""Geometry metrics of sampled backbones, for validation during training."""

from __future__ import annotations

import math

import torch

from flowbb.geometry.checks import ca_ca_deviation, ca_ca_distances, count_clashes, radius_of_gyration

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
            "rg_ratio": float(rg[b]) / (2.2 * math.pow(max(n, 1), 0.38)),
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
