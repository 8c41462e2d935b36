"""Sequence clusters for the training set (one chain per cluster per epoch).

Two sources:

- an RCSB-style clusters file (``clusters-by-entity-30.txt``): one cluster per line, members separated by
  white space, each ``PDBID_ENTITY`` (e.g. ``1ABC_1``) or ``PDBID_CHAIN`` (e.g. ``1ABC_A``). A chain matches
  by ``pdb_id`` + ``entity_id`` first, then ``pdb_id`` + ``chain_id`` (case-insensitive). Chains that match no
  line form singleton clusters;
- computed from the sequences (no file): ``exact`` groups identical sequences; ``kmer`` is a greedy
  clustering (longest sequence first becomes a representative) where a chain joins the representative
  sharing the largest fraction of its distinct k-mers if that fraction is at least ``min_similarity``.
  With k = 3, 0.5 groups point mutants and close homologues (roughly above 80% identity); it is not a
  substitute for the 30% identity clusters of the full PDB (use the RCSB file for that).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np


def read_clusters_file(path: str | Path) -> dict[str, int]:
    """Member id (upper case) -> cluster number (line index) of an RCSB-style clusters file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"clusters file {path} does not exist")
    members: dict[str, int] = {}
    with open(path) as handle:
        for number, line in enumerate(handle):
            for member in line.split():
                members.setdefault(member.upper(), number)
    if not members:
        raise ValueError(f"clusters file {path} holds no cluster")
    return members


def _dense(labels: list) -> np.ndarray:
    """Relabel arbitrary hashable labels to 0..C-1 in order of first appearance."""
    mapping: dict = {}
    return np.array([mapping.setdefault(label, len(mapping)) for label in labels], dtype=np.int64)


def clusters_from_file(metadata, path: str | Path) -> np.ndarray:
    """Cluster id per row of ``metadata`` (columns pdb_id, entity_id, chain_id) from a clusters file.

    Returns:
        int64 [R], dense ids 0..C-1.
    """
    members = read_clusters_file(path)
    labels = []
    for row, (pdb_id, entity_id, chain_id) in enumerate(
        zip(metadata["pdb_id"], metadata["entity_id"], metadata["chain_id"])
    ):
        label = None
        if isinstance(pdb_id, str) and pdb_id:
            for suffix in (entity_id, chain_id):
                if isinstance(suffix, str) and suffix:
                    label = members.get(f"{pdb_id}_{suffix}".upper())
                    if label is not None:
                        break
        labels.append(("file", label) if label is not None else ("single", row))
    return _dense(labels)


def _kmers(sequence: str, k: int) -> set[str]:
    return {sequence[i : i + k] for i in range(len(sequence) - k + 1)} or {sequence}


def kmer_clusters(
    sequences: list[str], k: int = 3, min_similarity: float = 0.5, max_postings: int = 5000
) -> np.ndarray:
    """Greedy k-mer containment clustering (see module docstring).

    Args:
        sequences: R one-letter sequences.
        k: k-mer size.
        min_similarity: minimal fraction of a chain's distinct k-mers found in its representative.
        max_postings: k-mers shared by more representatives than this are not used to find candidates
            (low-complexity k-mers), which keeps the method fast on large sets.
    Returns:
        int64 [R] dense cluster ids.
    """
    unique = sorted(set(sequences), key=lambda seq: (-len(seq), seq))  # identical sequences: one lookup
    if len(unique) < len(sequences):
        labels = kmer_clusters(unique, k=k, min_similarity=min_similarity, max_postings=max_postings)
        of_sequence = dict(zip(unique, labels.tolist()))
        return _dense([of_sequence[seq] for seq in sequences])
    order = sorted(range(len(sequences)), key=lambda i: (-len(sequences[i]), sequences[i], i))
    rep_of = np.empty(len(sequences), dtype=np.int64)
    index: dict[str, list[int]] = {}
    reps: list[int] = []
    for i in order:
        kmers = _kmers(sequences[i], k)
        counts: Counter = Counter()
        for kmer in kmers:
            posting = index.get(kmer)
            if posting is not None and len(posting) <= max_postings:
                counts.update(posting)
        best = None
        if counts:
            rep, shared = max(counts.items(), key=lambda item: (item[1], -item[0]))
            if shared / len(kmers) >= min_similarity:
                best = rep
        if best is None:
            best = len(reps)
            reps.append(i)
            for kmer in kmers:
                index.setdefault(kmer, []).append(best)
        rep_of[i] = best
    return _dense(rep_of.tolist())


def compute_clusters(
    metadata,
    clusters_file: str | Path | None = None,
    method: str = "exact",
    k: int = 3,
    min_similarity: float = 0.5,
) -> np.ndarray:
    """Cluster id per row: from ``clusters_file`` when given, else computed with ``method``.

    Args:
        metadata: DataFrame with ``sequence`` (and pdb_id/entity_id/chain_id for a file).
        clusters_file: RCSB-style clusters file or None.
        method: "exact" | "kmer" | "none" (every chain its own cluster).
    Returns:
        int64 [R] dense cluster ids.
    """
    if clusters_file:
        return clusters_from_file(metadata, clusters_file)
    sequences = [str(s) for s in metadata["sequence"]]
    if method == "exact":
        return _dense(sequences)
    if method == "kmer":
        return kmer_clusters(sequences, k=k, min_similarity=min_similarity)
    if method == "none":
        return np.arange(len(sequences), dtype=np.int64)
    raise ValueError(f"unknown cluster method {method!r} (exact | kmer | none)")
