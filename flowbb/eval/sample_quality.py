"""Does a backbone look like a protein? Per-structure quality scores for the learning benchmark.

For one backbone ``atoms [L, 4, 3]`` (N, CA, C, O in Å): the geometry of :func:`flowbb.eval.metrics.backbone_metrics`
(the trace report of :mod:`flowbb.geometry.report`: mean CA-CA and its deviation from 3.8 Å, CA clashes and clashes
per 100 residues, radius of gyration and its ratio to compact folded chains of the same length; DSSP
helix/strand/coil), the fraction of (phi, psi) pairs in the allowed Ramachandran region, and the mean ProteinMPNN negative log-likelihood of designed sequences (a designability
proxy that runs on CPU: natural backbones give the reference value).

The allowed Ramachandran region is measured, not drawn by hand: the (phi, psi) pairs of a set of natural chains are
binned on a 10-degree grid, and the densest bins (3 x 3 neighbourhood counts) holding ``coverage`` (default 98 %)
of the pairs are "allowed"
(:class:`RamachandranRegion`). Chains that built the region score close to ``coverage`` by construction; chains
outside it (held-out natural chains, samples) are scored against it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from flowbb.eval.diversity import diversity
from flowbb.eval.metrics import backbone_metrics
from flowbb.geometry.backbone import dihedral

QUALITY_KEYS = ("ca_ca_deviation", "clashes_per_100", "helix_frac", "strand_frac", "coil_frac",
                "rg_ratio", "rama_allowed", "mpnn_nll")


def phi_psi(atoms: np.ndarray, atom_mask: np.ndarray | None = None, max_bond: float | None = 2.0,
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Backbone dihedrals of one chain.

    phi_i = dihedral(C_{i-1}, N_i, CA_i, C_i), psi_i = dihedral(N_i, CA_i, C_i, N_{i+1}), defined where both
    neighbours exist, all atoms are present and the peptide bonds C_{i-1}-N_i and C_i-N_{i+1} are shorter than
    ``max_bond`` Å (no chain break; ``None``: every consecutive pair counts as bonded, for generated backbones,
    whose every residue follows the previous one).

    Args:
        atoms: ``[L, 4, 3]`` N, CA, C, O (Å).
        atom_mask: ``[L, 4]`` bool (``None``: all present).
    Returns:
        phi ``[L]``, psi ``[L]`` (degrees, in (-180, 180]) and ``valid [L]`` bool (both defined).
    """
    x = torch.as_tensor(np.asarray(atoms, dtype=np.float64))
    length = x.shape[0]
    present = np.ones(length, bool) if atom_mask is None else np.asarray(atom_mask, bool)[:, :3].all(-1)
    phi = np.zeros(length)
    psi = np.zeros(length)
    valid = np.zeros(length, dtype=bool)
    if length < 3:
        return phi, psi, valid
    n, ca, c = x[:, 0], x[:, 1], x[:, 2]
    phi[1:] = torch.rad2deg(dihedral(c[:-1], n[1:], ca[1:], c[1:])).numpy()
    psi[:-1] = torch.rad2deg(dihedral(n[:-1], ca[:-1], c[:-1], n[1:])).numpy()
    bonded = present[1:] & present[:-1]
    if max_bond is not None:
        bonded &= (torch.linalg.vector_norm(n[1:] - c[:-1], dim=-1) < max_bond).numpy()
    valid[1:-1] = bonded[:-1] & bonded[1:]
    return phi, psi, valid


@dataclass
class RamachandranRegion:
    """Allowed (phi, psi) region: ``allowed [n_bins, n_bins]`` bool over a grid of ``bin_deg``-degree bins
    (phi along rows, psi along columns, from -180)."""

    allowed: np.ndarray
    bin_deg: float
    coverage: float

    @classmethod
    def from_angles(cls, phi: np.ndarray, psi: np.ndarray, coverage: float = 0.98, bin_deg: float = 10.0,
                    ) -> RamachandranRegion:
        """The densest bins (by counts summed over each bin's 3 x 3 neighbourhood) that hold ``coverage`` of the
        given natural (phi, psi) pairs (degrees)."""
        if len(phi) == 0:
            raise ValueError("RamachandranRegion: no (phi, psi) pairs to build the region from")
        n = round(360.0 / bin_deg)
        hist, _, _ = np.histogram2d(phi, psi, bins=n, range=[[-180, 180], [-180, 180]])
        # density: counts summed over the 3 x 3 neighbourhood (periodic), so that a sparse set of chains still
        # gives contiguous basins rather than isolated bins
        density = sum(np.roll(hist, (di, dj), axis=(0, 1)) for di in (-1, 0, 1) for dj in (-1, 0, 1))
        order = np.argsort(density.ravel(), kind="stable")[::-1]
        cum = np.cumsum(hist.ravel()[order]) / hist.sum()
        keep = order[: int(np.searchsorted(cum, coverage) + 1)]
        allowed = np.zeros(n * n, dtype=bool)
        allowed[keep] = True
        return cls(allowed.reshape(n, n), bin_deg, coverage)

    def allowed_fraction(self, phi: np.ndarray, psi: np.ndarray) -> float:
        """Fraction of the pairs (degrees) that fall in allowed bins (NaN for no pairs)."""
        if len(phi) == 0:
            return float("nan")
        n = self.allowed.shape[0]
        i = np.clip(((np.asarray(phi) + 180.0) // self.bin_deg).astype(int), 0, n - 1)
        j = np.clip(((np.asarray(psi) + 180.0) // self.bin_deg).astype(int), 0, n - 1)
        return float(self.allowed[i, j].mean())


def structure_quality(atoms: np.ndarray, atom_mask: np.ndarray | None, region: RamachandranRegion,
                      sequence: str | None = None, designer=None, seed: int = 0, generated: bool = False,
                      ) -> dict[str, float]:
    """Quality scores of one backbone (see the module docstring).

    Args:
        atoms: ``[L, 4, 3]`` (Å); atom_mask ``[L, 4]`` bool or None (all present).
        region: the allowed Ramachandran region.
        sequence: the native sequence (prolines for DSSP) or None for generated backbones.
        designer: a :class:`flowbb.eval.inverse_folding.ProteinMPNNDesigner`, or None to skip ``mpnn_nll``.
        seed: the designer's seed.
        generated: a generated backbone: every residue is bonded to the next (no chain breaks), so (phi, psi) is
            scored at every inner residue however long the modelled C-N bond is.
    Returns:
        the numeric keys of :func:`flowbb.eval.metrics.backbone_metrics` (``length``, ``ca_ca_mean``,
        ``ca_ca_deviation``, ``clashes`` (CA pairs < 3 Å, |i - j| >= 3), ``clashes_per_100``, ``rg`` (Å),
        ``rg_ratio`` (over :func:`flowbb.geometry.checks.folded_rg`), ``helix_frac``, ``strand_frac``,
        ``coil_frac``), then ``rama_allowed`` and ``mpnn_nll`` (mean over the designs; NaN without a designer).
    """
    atoms = np.asarray(atoms, dtype=np.float32)
    mask = np.ones(atoms.shape[:2], dtype=bool) if atom_mask is None else np.asarray(atom_mask, dtype=bool)
    geo = backbone_metrics(atoms[None], mask[None], [sequence])[0]
    phi, psi, ok = phi_psi(atoms, mask, max_bond=None if generated else 2.0)
    nll = float("nan")
    if designer is not None:
        designs = designer.design(atoms, mask, native_sequence=sequence, seed=seed)
        nll = float(np.mean([d.score for d in designs]))
    scores = {k: float(v) for k, v in geo.items() if k != "secondary_structure"}
    return scores | {"rama_allowed": region.allowed_fraction(phi[ok], psi[ok]), "mpnn_nll": nll}


def group_summary(rows: list[dict[str, float]], keys: tuple[str, ...] | None = None) -> dict[str, float]:
    """Mean of every key over a group (NaN-aware), its minimum and maximum, and the group size.

    Args:
        rows: one dict per structure (e.g. :func:`structure_quality`).
        keys: the keys to summarise (default: :data:`QUALITY_KEYS` plus ``length``, ``rg``, ``clashes``).
    Returns:
        ``count``, then per key ``<key>``, ``<key>_min``, ``<key>_max`` (NaN where no row has a finite value).
    """
    out: dict[str, float] = {"count": float(len(rows))}
    for key in keys if keys is not None else QUALITY_KEYS + ("length", "rg", "clashes"):
        vals = np.array([r[key] for r in rows], dtype=np.float64)
        finite = vals[np.isfinite(vals)]
        out[key] = float(finite.mean()) if len(finite) else math.nan
        out[f"{key}_min"] = float(finite.min()) if len(finite) else math.nan
        out[f"{key}_max"] = float(finite.max()) if len(finite) else math.nan
    return out


def score_samples(backbones: Sequence[np.ndarray], region: RamachandranRegion, designer=None, seed: int = 0,
                  progress: Callable[[Iterable], Iterable] = iter) -> tuple[list[dict[str, float]], dict[str, float]]:
    """Quality of generated backbones (:func:`structure_quality`, ``generated=True``) and their group summary
    (:func:`group_summary`) with ``pairwise_tm``, the mean pairwise TM-score of their CA traces (how alike they are).

    Args:
        backbones: ``[L, 4, 3]`` arrays (N, CA, C, O; Å).
        region, designer, seed: as for :func:`structure_quality`.
        progress: wraps the iteration over the backbones (e.g. ``tqdm``).
    Returns:
        (one row per backbone, the summary).
    """
    rows = [structure_quality(a, None, region, designer=designer, seed=seed, generated=True)
            for a in progress(backbones)]
    spread = diversity([np.asarray(a)[:, 1] for a in backbones])["mean_pairwise_tm"]
    return rows, group_summary(rows) | {"pairwise_tm": spread}


def natural_reference(processed_dir: str | Path, lengths: list[int], window: int, num_natural: int, seed: int = 0,
                      ) -> tuple[dict[int, list[dict]], RamachandranRegion]:
    """Natural chains to score beside samples, and the allowed Ramachandran region, from a processed set.

    Args:
        processed_dir: a processed training set (:class:`flowbb.data.store.ProcessedStore`).
        lengths: sample lengths; for each, up to ``num_natural`` chains of ``length +- window`` modelled residues.
        seed: the draw of the chains.
    Returns:
        ``{length: [chain arrays (``atoms [L, 4, 3]``, ``atom_mask``, ...) + ``sequence``, ``name``]}`` and the region
        built from up to 300 other chains of the set (none of the returned ones).
    """
    from flowbb.data.store import ProcessedStore

    store = ProcessedStore(processed_dir)
    meta = store.metadata
    rng = np.random.default_rng(seed)
    natural: dict[int, list[dict]] = {}
    used: set[int] = set()
    for length in lengths:
        rows = meta.index[(meta["modeled_length"] - length).abs() <= window].to_numpy().copy()  # writable
        rows = rng.permutation(rows)[:num_natural]
        used.update(int(r) for r in rows)
        natural[length] = [dict(store.chain(int(r)), sequence=meta.at[r, "sequence"],
                                name=f"{meta.at[r, 'source_file']}:{meta.at[r, 'chain_id']}") for r in rows]
    others = rng.permutation([r for r in meta.index.to_numpy() if int(r) not in used])[:300]
    phis, psis = [], []
    for r in others:
        arrays = store.chain(int(r))
        phi, psi, ok = phi_psi(arrays["atoms"], arrays["atom_mask"])
        phis.append(phi[ok])
        psis.append(psi[ok])
    region = RamachandranRegion.from_angles(np.concatenate(phis), np.concatenate(psis))
    return natural, region
