"""Novelty: the highest TM-score of a sample to any chain of a reference set (e.g. the training set).

The reference set is a processed dataset folder (``metadata.parquet`` + coordinate store, read through
:mod:`flowbb.data`; protein chains as CA traces, RNA chains as C4' traces) or any folder of structure files (every
protein chain becomes one reference). Its traces are held in memory; :class:`NoveltySearcher` pre-filters by length and runs TM-align in
parallel worker processes (spawned once, the references sent once).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Self

import numpy as np

from flowbb.eval.tm import tm_align

log = logging.getLogger(__name__)


@dataclass
class ReferenceSet:
    """CA traces of the reference chains.

    Attributes:
        names: N chain names (``file:chain`` or the store's record name).
        coords: ``[sum L_i, 3]`` float64 CA coordinates of all chains, concatenated.
        offsets: ``[N + 1]`` int64; chain i is ``coords[offsets[i]:offsets[i + 1]]``.
        source: where the set was read from.
    """

    names: list[str]
    coords: np.ndarray
    offsets: np.ndarray
    source: str

    @property
    def lengths(self) -> np.ndarray:
        """``[N]`` number of CA atoms per chain."""
        return np.diff(self.offsets)

    def __len__(self) -> int:
        return len(self.names)

    def ca(self, i: int) -> np.ndarray:
        """``[L_i, 3]`` CA of chain i."""
        return self.coords[self.offsets[i] : self.offsets[i + 1]]

    @classmethod
    def from_chains(cls, names: list[str], cas: list[np.ndarray], source: str) -> ReferenceSet:
        """Build from per-chain ``[L_i, 3]`` arrays."""
        lengths = np.array([len(c) for c in cas], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        coords = np.concatenate(cas).astype(np.float64) if cas else np.zeros((0, 3))
        return cls(list(names), coords, offsets, source)

    def save(self, path: Path, signature: str) -> None:
        """Atomic ``.npz`` cache (written to a temporary file, then renamed)."""
        tmp = path.with_name(path.name + f".tmp{os.getpid()}.npz")
        np.savez(
            tmp,
            names=np.array(self.names),
            coords=self.coords,
            offsets=self.offsets,
            source=np.array(self.source),
            signature=np.array(signature),
        )
        os.replace(tmp, path)

    @classmethod
    def load_cache(cls, path: Path, signature: str) -> ReferenceSet | None:
        """The cached set if ``path`` exists and was built from the same inputs, else ``None``."""
        if not path.is_file():
            return None
        try:
            z = np.load(path, allow_pickle=False)
            if str(z["signature"]) != signature:
                return None
            return cls([str(n) for n in z["names"]], z["coords"], z["offsets"], str(z["source"]))
        except (OSError, KeyError, ValueError) as err:
            log.warning("ignoring unreadable reference cache %s (%s)", path, err)
            return None


def _read_file_chains(args: tuple[str, str, int]) -> tuple[list[str], list[np.ndarray], str | None]:
    from flowbb.data.structure_io.files import StructureReadError
    from flowbb.data.structure_io.read import read_chains

    path, rel, min_length = args
    try:
        parsed = read_chains(path)
    except StructureReadError as err:
        return [], [], str(err)
    names, cas = [], []
    for ch in parsed.chains:
        ok = ch.atom_mask[:, 1]
        if ok.sum() >= min_length:
            names.append(f"{rel}:{ch.chain_id}")
            cas.append(ch.atoms[ok, 1].astype(np.float64))
    return names, cas, None


def _folder_signature(files: list[Path], min_length: int, molecule: str = "protein") -> str:
    h = hashlib.sha1((f"min_length={min_length}" if molecule == "protein" else f"{molecule}|min_length={min_length}").encode())
    for f in files:
        st = f.stat()
        h.update(f"{f}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _read_rna_file_chains(args: tuple[str, str, int]) -> tuple[list[str], list[np.ndarray], str | None]:
    """(names, C4' traces, error) of the RNA chains of one file with >= min_length C4' atoms."""
    from flowbb.data.nucleic import read_rna_chains
    from flowbb.data.structure_io.files import StructureReadError

    path, rel, min_length = args
    try:
        chains = read_rna_chains(Path(path))
    except StructureReadError as err:
        return [], [], str(err)
    names, traces = [], []
    for ch in chains:
        ok = ch.atom_mask[:, 0]  # C4'
        if ok.sum() >= min_length:
            names.append(f"{rel}:{ch.chain_id}")
            traces.append(ch.atoms[ok, 0].astype(np.float64))
    return names, traces, None


def load_reference_folder(
    folder: Path, min_length: int = 20, num_workers: int = 0, cache: Path | None = None, molecule: str = "protein"
) -> ReferenceSet:
    """Every chain of one molecule type (protein: CA traces of chains with at least ``min_length`` CA atoms; rna:
    C4' traces) of every structure file under ``folder``.

    Unreadable files are skipped with a warning. With ``cache``, the parsed set is stored there and reused
    while the files are unchanged.
    """
    from flowbb.data.structure_io.files import is_structure_file

    if molecule not in ("protein", "rna"):
        raise ValueError(f"reference: molecule must be protein or rna, got {molecule!r}")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and is_structure_file(p))
    if not files:
        raise FileNotFoundError(f"reference={folder}: no structure files (.pdb/.cif/.bcif[.gz]) found")
    signature = _folder_signature(files, min_length, molecule)
    if cache is not None:
        cached = ReferenceSet.load_cache(cache, signature)
        if cached is not None:
            return cached
    jobs = [(str(f), str(f.relative_to(folder)), min_length) for f in files]
    read = _read_file_chains if molecule == "protein" else _read_rna_file_chains
    if num_workers and num_workers > 0:
        with ProcessPoolExecutor(num_workers, mp_context=get_context("spawn")) as ex:
            results = list(ex.map(read, jobs, chunksize=8))
    else:
        results = [read(j) for j in jobs]
    names: list[str] = []
    cas: list[np.ndarray] = []
    for n, c, err in results:
        if err:
            log.warning("reference: skipping %s", err)
        names += n
        cas += c
    if not names:
        raise ValueError(f"reference={folder}: no {molecule} chain with >= {min_length} residues")
    ref = ReferenceSet.from_chains(names, cas, str(folder))
    if cache is not None:
        ref.save(cache, signature)
    return ref


def load_reference_processed(folder: Path, min_length: int = 20, molecule: str | None = None) -> ReferenceSet:
    """Traces of every chain of a processed dataset (``metadata.parquet`` + coordinate store), read through
    :class:`flowbb.data.store.ProcessedStore`: CA of protein chains, C4' of RNA chains
    (:data:`flowbb.molecules.TRACE_ATOMS`); ``molecule`` (``protein`` | ``rna``) keeps the chains of one type (None:
    all). Names are ``source_file:chain_id``."""
    from flowbb.data.store import ProcessedStore
    from flowbb.molecules import TRACE_ATOMS

    store = ProcessedStore(folder)
    meta = store.metadata
    names, cas = [], []
    for row in range(len(store)):
        kind = store.molecule(row)
        if molecule is not None and kind != molecule:
            continue
        rec = store.chain(row)
        k = TRACE_ATOMS[kind]
        ok = np.asarray(rec["atom_mask"])[:, k].astype(bool)
        if ok.sum() >= min_length:
            names.append(f"{meta['source_file'].iloc[row]}:{meta['chain_id'].iloc[row]}")
            cas.append(np.asarray(rec["atoms"])[ok, k].astype(np.float64))
    if not names:
        raise ValueError(f"reference={folder}: no chain with >= {min_length} residues")
    return ReferenceSet.from_chains(names, cas, str(folder))


def load_reference(
    path: str | Path, min_length: int = 20, num_workers: int = 0, cache: Path | None = None,
    molecule: str | None = None,
) -> ReferenceSet:
    """A processed dataset folder (has ``metadata.parquet``; ``molecule`` keeps one type, see
    :func:`load_reference_processed`) or a folder of structure files (chains of ``molecule``, default protein)."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"reference={path}: no such folder")
    if (folder / "metadata.parquet").is_file():
        return load_reference_processed(folder, min_length, molecule)
    return load_reference_folder(folder, min_length, num_workers, cache, molecule or "protein")


# ---------------------------------------------------------------- search
_WORKER_REF: ReferenceSet | None = None


def _init_worker(ref: ReferenceSet) -> None:
    global _WORKER_REF
    _WORKER_REF = ref


def _best_in(ref: ReferenceSet, query: np.ndarray, indices: np.ndarray) -> tuple[float, int]:
    best, best_i = -1.0, -1
    for i in indices.tolist():
        tm = tm_align(query, ref.ca(i)).tm_norm_1
        if tm > best:
            best, best_i = tm, i
    return best, best_i


def _worker_best(args: tuple[np.ndarray, np.ndarray]) -> tuple[float, int]:
    assert _WORKER_REF is not None
    return _best_in(_WORKER_REF, *args)


@dataclass(frozen=True)
class NoveltyHit:
    """Result of one novelty search.

    Attributes:
        max_tm: highest TM-score (normalised by the sample's length) to any compared reference; NaN if none.
        match: name of that reference ('' if none).
        num_compared: references that passed the length pre-filter.
    """

    max_tm: float
    match: str
    num_compared: int


class NoveltySearcher:
    """Max-TM search of samples against a :class:`ReferenceSet`.

    Args:
        reference: the reference chains.
        num_workers: TM-align processes (0: in this process).
        min_length_ratio, max_length_ratio: compare only references with
            ``min_length_ratio * L <= L_ref <= max_length_ratio * L``. A reference shorter than ``0.5 L`` cannot
            reach a TM-score (normalised by L) much above 0.5, so the lower bound loses no novel-vs-known call.
    """

    def __init__(
        self,
        reference: ReferenceSet,
        num_workers: int = 2,
        min_length_ratio: float = 0.5,
        max_length_ratio: float = 2.0,
    ) -> None:
        if not 0 <= min_length_ratio <= max_length_ratio:
            raise ValueError(
                f"novelty length ratios must satisfy 0 <= min <= max, got {min_length_ratio}, {max_length_ratio}"
            )
        self.reference = reference
        self.num_workers = int(num_workers)
        self.min_length_ratio = float(min_length_ratio)
        self.max_length_ratio = float(max_length_ratio)
        self._pool: ProcessPoolExecutor | None = None

    def candidates(self, length: int) -> np.ndarray:
        """Indices of references passing the length pre-filter for a sample of ``length`` residues."""
        lens = self.reference.lengths
        keep = (
            (lens >= self.min_length_ratio * length) & (lens <= self.max_length_ratio * length) & (lens >= 3)
        )
        return np.nonzero(keep)[0]

    def _get_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self.num_workers,
                mp_context=get_context("spawn"),
                initializer=_init_worker,
                initargs=(self.reference,),
            )
        return self._pool

    def search(self, ca: np.ndarray, on_progress: Callable[[int], None] | None = None) -> NoveltyHit:
        """Highest TM-score of ``ca`` ``[L, 3]`` to the length-filtered references (ties: lowest index)."""
        query = np.ascontiguousarray(ca, dtype=np.float64)
        cand = self.candidates(len(query))
        if len(cand) == 0:
            return NoveltyHit(math.nan, "", 0)
        if self.num_workers > 0 and len(cand) > 1:
            n_chunks = min(len(cand), self.num_workers * 4)
            chunks = [c for c in np.array_split(cand, n_chunks) if len(c)]
            results = list(self._get_pool().map(_worker_best, [(query, c) for c in chunks]))
        else:
            results = [_best_in(self.reference, query, cand)]
        best, best_i = max(results, key=lambda r: (r[0], -r[1]))
        return NoveltyHit(float(best), self.reference.names[best_i], len(cand))

    def close(self) -> None:
        """Stop the worker processes."""
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def reference_settings_digest(path: str | Path | None, **settings) -> str:
    """Short digest of the reference path and search settings (part of the evaluation fingerprint)."""
    payload = json.dumps({"path": str(Path(path).resolve()) if path else None, **settings}, sort_keys=True)
    return hashlib.sha1(payload.encode()).hexdigest()[:12]


def novelty_searcher(
    reference: str | Path, novelty_cfg: Any, cache: Path | None, molecule: str = "protein"
) -> NoveltySearcher:
    """The novelty search an evaluation's ``reference`` and ``novelty`` settings ask for (``min_reference_length``,
    ``num_workers``, ``min_length_ratio``, ``max_length_ratio``), over the chains of ``molecule``."""
    nv = novelty_cfg
    ref = load_reference(reference, int(nv.get("min_reference_length", 20)), int(nv.get("num_workers", 0)),
                         cache=cache, molecule=molecule)
    log.info("novelty reference: %d %s chains from %s", len(ref), molecule, ref.source)
    return NoveltySearcher(ref, int(nv.get("num_workers", 0)), float(nv.get("min_length_ratio", 0.5)),
                           float(nv.get("max_length_ratio", 2.0)))

