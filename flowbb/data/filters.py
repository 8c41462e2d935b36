"""Row filters over ``metadata.parquet`` (training-set selection from config).

Every threshold may be ``None`` (no filter). Lengths are *modeled* lengths (residues with N, CA, C).

Radius-of-gyration outliers: a chain is dropped when ``Rg > rg_factor * L ** rg_exponent`` (A, CA atoms,
L = modeled length). Compact folded chains follow Rg ~ 2.2 L^0.38 A; with the default exponent 0.4 the
median of Rg / L^0.4 on PDB chains is about 2.1 and its 95th percentile about 2.9, so ``rg_factor: 3.0``
removes elongated, unfolded or domain-swapped outliers (about 4% of chains), as FrameFlow's
Rg-quantile filter does.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np


@dataclass
class FilterConfig:
    """Filter thresholds (None disables one)."""

    min_length: int | None = 60
    max_length: int | None = 512
    max_resolution: float | None = None
    keep_unknown_resolution: bool = True
    max_coil_frac: float | None = None
    rg_factor: float | None = None
    rg_exponent: float = 0.4
    max_chain_breaks: int | None = None
    monomer_only: bool = False
    methods: list[str] | None = None

    @classmethod
    def from_dict(cls, values: dict | None) -> FilterConfig:
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown filter keys {sorted(unknown)}; known: {sorted(known)}")
        if values.get("methods") is not None:
            values["methods"] = list(values["methods"])
        return cls(**values)


def is_monomer(metadata) -> np.ndarray:
    """bool [R]: oligomeric state 'monomeric' when the file states one, else one protein chain in the file."""
    detail = metadata["oligomeric_detail"].astype(object)
    known = detail.notna().to_numpy() & (detail.astype(str).str.len() > 0).to_numpy()
    stated = detail.astype(str).str.lower().eq("monomeric").to_numpy()
    single = metadata["num_chains_in_file"].to_numpy() == 1
    return np.where(known, stated, single)


def filter_mask(metadata, cfg: FilterConfig) -> tuple[np.ndarray, dict[str, int]]:
    """Rows passing every filter.

    Args:
        metadata: DataFrame of ``metadata.parquet``.
        cfg: thresholds.
    Returns:
        (keep bool [R], removed: filter name -> number of rows it removes on its own).
    """
    length = metadata["modeled_length"].to_numpy()
    tests: dict[str, np.ndarray] = {}
    if cfg.min_length is not None:
        tests["min_length"] = length >= cfg.min_length
    if cfg.max_length is not None:
        tests["max_length"] = length <= cfg.max_length
    if cfg.max_resolution is not None:
        resolution = metadata["resolution"].to_numpy(dtype=np.float64)
        unknown = np.isnan(resolution)
        tests["max_resolution"] = np.where(
            unknown, cfg.keep_unknown_resolution, resolution <= cfg.max_resolution
        )
    if cfg.max_coil_frac is not None:
        tests["max_coil_frac"] = metadata["coil_frac"].to_numpy(dtype=np.float64) <= cfg.max_coil_frac
    if cfg.rg_factor is not None:
        rg = metadata["radius_of_gyration"].to_numpy(dtype=np.float64)
        tests["rg_outlier"] = rg <= cfg.rg_factor * np.maximum(length, 1) ** cfg.rg_exponent
    if cfg.max_chain_breaks is not None:
        tests["max_chain_breaks"] = metadata["num_chain_breaks"].to_numpy() <= cfg.max_chain_breaks
    if cfg.monomer_only:
        tests["monomer_only"] = is_monomer(metadata)
    if cfg.methods:
        method = metadata["method"].astype(object).fillna("").astype(str).str.upper()
        wanted = [m.upper() for m in cfg.methods]
        tests["methods"] = method.apply(lambda text: any(w in text for w in wanted)).to_numpy(dtype=bool)
    keep = np.ones(len(metadata), dtype=bool)
    for test in tests.values():
        keep &= test
    return keep, {name: int((~test).sum()) for name, test in tests.items()}
