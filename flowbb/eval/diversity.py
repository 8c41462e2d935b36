"""Diversity of a set of backbones: pairwise TM-scores and single-linkage clusters at a TM threshold."""

from __future__ import annotations

import math
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import numpy as np

from flowbb.eval.tm import tm_align


def _pair_chunk(args: tuple[list[np.ndarray], list[tuple[int, int]]]) -> list[float]:
    cas, pairs = args
    out = []
    for i, j in pairs:
        r = tm_align(cas[i], cas[j])
        out.append(0.5 * (r.tm_norm_1 + r.tm_norm_2))
    return out


def pairwise_tm(cas: list[np.ndarray], num_workers: int = 0) -> np.ndarray:
    """Symmetric matrix of TM-scores between all pairs (mean of the two length normalisations).

    Args:
        cas: N CA traces ``[L_i, 3]``.
        num_workers: processes for TM-align (0: in this process).
    Returns:
        ``[N, N]`` float64, 1 on the diagonal.
    """
    n = len(cas)
    tm = np.eye(n, dtype=np.float64)
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    if not pairs:
        return tm
    if num_workers and num_workers > 0 and len(pairs) > 8:
        chunks = [pairs[k :: num_workers * 4] for k in range(num_workers * 4)]
        chunks = [c for c in chunks if c]
        with ProcessPoolExecutor(num_workers, mp_context=get_context("spawn")) as ex:
            results = list(ex.map(_pair_chunk, [(cas, c) for c in chunks]))
        flat = {p: v for c, r in zip(chunks, results) for p, v in zip(c, r)}
        values = [flat[p] for p in pairs]
    else:
        values = _pair_chunk((cas, pairs))
    for (i, j), v in zip(pairs, values):
        tm[i, j] = tm[j, i] = v
    return tm


def single_linkage_clusters(tm: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Cluster labels: i and j share a cluster when linked by a chain of pairs with TM >= threshold.

    Args:
        tm: ``[N, N]`` symmetric TM-score matrix.
        threshold: link threshold.
    Returns:
        ``[N]`` int labels 0..K-1 (in order of first appearance).
    """
    n = tm.shape[0]
    parent = list(range(n))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for i, j in zip(*np.nonzero(np.triu(tm >= threshold, k=1))):
        ri, rj = find(int(i)), find(int(j))
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    roots: dict[int, int] = {}
    return np.array([roots.setdefault(find(i), len(roots)) for i in range(n)], dtype=np.int64)


def diversity(cas: list[np.ndarray], cluster_tm: float = 0.5, num_workers: int = 0) -> dict[str, float | int]:
    """Diversity summary of a set of backbones.

    Args:
        cas: N CA traces.
        cluster_tm: TM threshold for single-linkage clustering.
        num_workers: processes for TM-align.
    Returns:
        ``n``, ``mean_pairwise_tm`` (NaN for N < 2; lower is more diverse), ``num_pairs``,
        ``num_clusters`` and ``cluster_fraction`` (clusters / N; higher is more diverse).
    """
    n = len(cas)
    if n == 0:
        return {
            "n": 0,
            "mean_pairwise_tm": math.nan,
            "num_pairs": 0,
            "num_clusters": 0,
            "cluster_fraction": math.nan,
        }
    tm = pairwise_tm(cas, num_workers)
    iu = np.triu_indices(n, k=1)
    labels = single_linkage_clusters(tm, cluster_tm)
    k = int(labels.max()) + 1
    return {
        "n": n,
        "mean_pairwise_tm": float(tm[iu].mean()) if n > 1 else math.nan,
        "num_pairs": len(iu[0]),
        "num_clusters": k,
        "cluster_fraction": k / n,
    }
