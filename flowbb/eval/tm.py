"""TM-score between two traces (one atom per residue) through TM-align (the ``tmtools`` bindings).

TM-align finds its own residue alignment, so the two chains may differ in length and sequence. Proteins are
compared on CA; RNA on C4' (:data:`flowbb.molecules.TRACE_ATOMS`): tmtools takes any ``[L, 3]`` trace, and its
scores use TM-align's protein normalisation d0(L) = 1.24 (L - 15)^(1/3) - 1.8 Å (US-align's RNA mode, as
RNA-FrameFlow's published scTM, uses another d0, so RNA scores here are not on that scale). The sequence letters
only label the alignment (poly-A by default).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

ArrayLike = (
    Any  # numpy array or torch tensor [L, 3]; torch is not imported here (worker processes stay light)
)


@dataclass(frozen=True)
class TMResult:
    """TM-align result.

    Attributes:
        tm_norm_1: TM-score normalised by the length of the first chain.
        tm_norm_2: TM-score normalised by the length of the second chain.
        rmsd: RMSD (Å) over the residues TM-align aligned.
    """

    tm_norm_1: float
    tm_norm_2: float
    rmsd: float


def _as_coords(x: ArrayLike, name: str) -> np.ndarray:
    arr = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise ValueError(f"{name}: expected CA coordinates of shape [L, 3], got {arr.shape}")
    if arr.shape[0] < 3:
        raise ValueError(f"{name}: TM-align needs at least 3 residues, got {arr.shape[0]}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: coordinates contain NaN or inf")
    return arr


def _as_sequence(seq: str | None, length: int, name: str) -> str:
    if seq is None:
        return "A" * length
    if len(seq) != length:
        raise ValueError(f"{name}: sequence length {len(seq)} != number of residues {length}")
    return seq.upper()


def tm_align(
    ca_1: ArrayLike, ca_2: ArrayLike, seq_1: str | None = None, seq_2: str | None = None
) -> TMResult:
    """TM-align two CA traces.

    Args:
        ca_1: ``[L1, 3]`` CA coordinates (Å) of the first chain (numpy or torch).
        ca_2: ``[L2, 3]`` CA coordinates (Å) of the second chain.
        seq_1, seq_2: one-letter sequences of length L1 / L2; poly-Ala when ``None`` (TM-align's
            structural alignment does not depend on them for scoring).
    Returns:
        :class:`TMResult` with both normalisations.
    """
    x = _as_coords(ca_1, "ca_1")
    y = _as_coords(ca_2, "ca_2")
    from tmtools import tm_align as _tm_align

    res = _tm_align(x, y, _as_sequence(seq_1, len(x), "seq_1"), _as_sequence(seq_2, len(y), "seq_2"))
    return TMResult(float(res.tm_norm_chain1), float(res.tm_norm_chain2), float(res.rmsd))


def tm_score(
    ca_query: ArrayLike, ca_target: ArrayLike, seq_query: str | None = None, seq_target: str | None = None
) -> float:
    """TM-score of ``ca_query`` against ``ca_target`` normalised by the query's length.

    Args:
        ca_query: ``[Lq, 3]`` (the chain whose length normalises the score, e.g. the designed backbone).
        ca_target: ``[Lt, 3]``.
    Returns:
        TM-score in (0, 1].
    """
    return tm_align(ca_query, ca_target, seq_query, seq_target).tm_norm_1
