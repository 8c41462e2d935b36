"""Preprocessing: a folder of PDB/mmCIF files -> a processed store (``flowbb.data.store``).

Pipeline (:func:`preprocess`):

1. walk ``raw_dir`` (recursively, sorted, hidden entries and ``out_dir`` skipped); every file is either a
   structure file (by extension, see :func:`flowbb.data.structure_io.files.split_format`) or *ignored*;
2. process the structure files in a process pool (largest first): parse, keep protein chains with at least
   ``min_length`` modeled residues and RNA chains with at least ``min_length`` nucleotides with a frame (C4', O4',
   C3'; bad or partial nucleotides are kept with their atoms masked and logged as ``NUCLEOTIDES`` lines), record
   each chain's ``molecule`` (:mod:`flowbb.data.chain_records`), compute DSSP fractions (proteins), radius of
   gyration (:func:`flowbb.geometry.checks.radius_of_gyration`), chain breaks, and write one
   **shard** per source file, ``out_dir/shards/<h[:2]>/<h>.npz`` with ``h = sha1(relative path)``, through a
   temporary file and an atomic rename. Unusable files get a shard too, holding the reason;
3. consolidate (:mod:`flowbb.data.shards`): read the shards of the current files in source-path order and
   write the store (arrays via temporary files + rename, ``metadata.parquet`` last, its columns those of
   :data:`flowbb.data.store.METADATA_COLUMNS`), plus ``files.csv`` (one
   line per input file: status, reason, chains kept) and ``summary.json``.

Resuming: a shard is reused when its source path, size, mtime and the processing parameters match, so a
re-run after an interruption (even SIGKILL: shards are either complete or absent) only processes the
remaining files and ends with byte-identical arrays and an identical metadata table. The input folder is
only read. Ctrl-C stops with :class:`PreprocessInterrupted` ("interrupted: N of M files done; rerun the same
command to resume"); the shards written so far are kept.

Before anything is written, the options, the paths and the ``raw_dir`` an existing ``out_dir`` was made from are
checked (:mod:`flowbb.data.preprocess_checks`); a ``raw_dir`` without structure files is an error.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flowbb.data import preprocess_checks as checks
from flowbb.data.chain_records import protein_records, rna_records
from flowbb.data.nucleic import NO_RNA, read_rna_chains
from flowbb.data.preprocess_checks import PreprocessError
from flowbb.data.secondary_structure import DEPRECATED_DSSP_METHODS
from flowbb.data.shards import IGNORED, concat_arrays, consolidate, read_shard_meta, shard_path, write_shard
from flowbb.data.structure_io.files import NO_PROTEIN, StructureReadError, is_structure_file
from flowbb.data.structure_io.read import read_chains

log = logging.getLogger("flowbb.preprocess")

SHARD_VERSION = 2  # bump when the records produced for a file change: old shards are then redone (2: RNA chains)
TOO_SHORT = "no chain with min_length modeled residues"
UNEXPECTED = "unexpected error"


class PreprocessInterrupted(KeyboardInterrupt):
    """Ctrl-C during preprocessing; ``str()`` is the line to show (the CLI exits 130)."""

    def __init__(self, done: int, total: int) -> None:
        self.done = done
        self.total = total
        super().__init__(f"interrupted: {done} of {total} files done; rerun the same command to resume")

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class PreprocessParams:
    """Parameters that change the processed records (part of each shard's fingerprint)."""

    min_length: int = 40
    dssp_method: str = "kabsch_sander"

    def key(self) -> str:
        """The parameters' hash in shard fingerprints. A DSSP method is hashed under its former name where it has
        one (``kabsch_sander`` was ``flowbb``), so the shards of folders processed before the rename stay current."""
        former = {new: old for old, new in DEPRECATED_DSSP_METHODS.items()}
        values = {**asdict(self), "dssp_method": former.get(self.dssp_method, self.dssp_method)}
        return hashlib.sha1(json.dumps({**values, "v": SHARD_VERSION}, sort_keys=True).encode()).hexdigest()[:16]


# ---------------------------------------------------------------- walking
def list_input_files(raw_dir: Path, exclude: Path | None = None) -> list[str]:
    """Relative POSIX paths of all regular files under ``raw_dir`` (sorted; hidden entries skipped)."""
    files = []
    exclude = exclude.resolve() if exclude is not None else None
    for dirpath, dirnames, filenames in os.walk(raw_dir, followlinks=True):
        here = Path(dirpath)
        dirnames[:] = sorted(
            d
            for d in dirnames
            if not d.startswith(".") and (exclude is None or (here / d).resolve() != exclude)
        )
        for name in filenames:
            if name.startswith("."):
                continue
            path = here / name
            if path.is_file():
                files.append(path.relative_to(raw_dir).as_posix())
    return sorted(files)


# ---------------------------------------------------------------- one file
def _read(reader, path: Path) -> tuple[Any, StructureReadError | None]:
    """``reader(path)``, or (None, the reason it failed); an unexpected exception becomes a reason too."""
    try:
        return reader(path), None
    except StructureReadError as exc:
        return None, exc
    except Exception as exc:  # noqa: BLE001 -- one bad file must not stop the run; the reason is logged
        return None, StructureReadError(path, UNEXPECTED, f"{type(exc).__name__}: {exc}"[:300])


def process_file(
    raw_dir: Path, rel_path: str, params: PreprocessParams
) -> tuple[dict, dict[str, np.ndarray]]:
    """Parse one file into chain records + concatenated per-residue arrays, protein and RNA chains.

    Returns:
        (meta, arrays): meta has ``status`` ('ok' | 'skipped'), ``reason``, ``detail``, ``chains`` (list of
        per-chain record dicts, proteins first, each with its ``molecule``), ``num_short_chains`` and ``notes``
        (bad or partial nucleotides, for the log); arrays: for every molecule type of
        :data:`flowbb.data.store.LAYOUTS` its arrays (file stems as keys) with the chains' residues concatenated
        in record order. A file is skipped when it yields no chain of either type: with the protein reader's
        reason, unless the RNA reader found RNA the protein reader did not.
    """
    path = raw_dir / rel_path
    meta: dict = {"source_file": rel_path, "status": "ok", "reason": "", "detail": "", "chains": [],
                  "num_short_chains": 0, "notes": []}
    parsed, protein_error = _read(read_chains, path)
    rna_chains, rna_error = _read(read_rna_chains, path)
    arrays: dict[str, np.ndarray] = {}
    protein_parts: list[dict[str, np.ndarray]] = []
    rna_parts: list[dict[str, np.ndarray]] = []
    if parsed is not None:
        records, protein_parts, short = protein_records(parsed, rel_path, params.min_length, params.dssp_method)
        meta["chains"] += records
        meta["num_short_chains"] += short
    if rna_chains is not None:
        records, rna_parts, short, notes = rna_records(rna_chains, rel_path, params.min_length, parsed)
        meta["chains"] += records
        meta["num_short_chains"] += short
        meta["notes"] = notes
    arrays.update(concat_arrays(protein_parts, "protein"))
    arrays.update(concat_arrays(rna_parts, "rna"))
    if meta["chains"]:
        return meta, arrays
    if parsed is None and rna_chains is None:
        error = protein_error if rna_error.reason == NO_RNA or protein_error.reason != NO_PROTEIN else rna_error
        meta.update(status="skipped", reason=error.reason, detail=error.detail)
        return meta, arrays
    lengths = [c.modeled_length for c in (parsed.chains if parsed else [])]
    lengths += [int(c.res_mask.sum()) for c in (rna_chains or [])]
    kinds = [f"{len(parsed.chains)} protein chain(s)"] if parsed else []
    kinds += [f"{len(rna_chains)} RNA chain(s)"] if rna_chains else []
    meta.update(status="skipped", reason=TOO_SHORT,
                detail=f"{', '.join(kinds)}, longest {max(lengths)} modeled residues")
    return meta, arrays


def _fingerprint(raw_dir: Path, rel_path: str, params: PreprocessParams) -> dict:
    stat = (raw_dir / rel_path).stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "params": params.key()}


def _shard_is_current(out_dir: Path, raw_dir: Path, rel_path: str, params: PreprocessParams) -> bool:
    path = shard_path(out_dir, rel_path)
    if not path.is_file():
        return False
    meta = read_shard_meta(path)
    return (
        meta is not None
        and meta.get("source_file") == rel_path
        and meta.get("fingerprint") == _fingerprint(raw_dir, rel_path, params)
    )


# globals of a worker process (set once by the pool initializer; fork start method shares the imports)
_WORKER: dict = {}


def _init_worker(raw_dir: str, out_dir: str, params: PreprocessParams, ignore_sigint: bool = False) -> None:
    if ignore_sigint:  # a pool worker: Ctrl-C is the driver's to handle (no traceback per worker)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    _WORKER.update(raw_dir=Path(raw_dir), out_dir=Path(out_dir), params=params)


def _work(rel_path: str) -> tuple[str, str, str, int, list[str]]:
    raw_dir, out_dir, params = _WORKER["raw_dir"], _WORKER["out_dir"], _WORKER["params"]
    meta, arrays = process_file(raw_dir, rel_path, params)
    meta["fingerprint"] = _fingerprint(raw_dir, rel_path, params)
    write_shard(shard_path(out_dir, rel_path), meta, arrays)
    return rel_path, meta["status"], meta["reason"], len(meta["chains"]), meta.get("notes", [])


# ---------------------------------------------------------------- driver
def _setup_file_log(out_dir: Path) -> logging.Handler:
    handler = logging.FileHandler(out_dir / "preprocess.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False  # one line per file: to the log file, not the console
    return handler


def preprocess(
    raw_dir: str | Path,
    out_dir: str | Path,
    num_workers: int = 2,
    min_length: int = 40,
    dssp_method: str = "kabsch_sander",
    progress: bool = True,
    chunksize: int = 2,
    overwrite: bool = False,
) -> dict:
    """Turn a folder of structure files into a processed store; resumable (see module docstring).

    Args:
        raw_dir: input folder (read only).
        out_dir: output folder (created); may hold the shards of an earlier, interrupted run.
        num_workers: worker processes (0 or 1: in this process).
        min_length: minimal number of modeled residues (N, CA, C present; RNA: C4', O4', C3') for a chain to
            become a record.
        dssp_method: "kabsch_sander" or "pydssp" (see :func:`flowbb.data.secondary_structure.assign_dssp`;
            "flowbb", the former name of "kabsch_sander", warns).
        progress: show a progress bar.
        chunksize: files per task sent to a worker.
        overwrite: allow an ``out_dir`` made from another ``raw_dir`` (its dataset is replaced; shards of files
            with the same relative path, size and mtime are reused).
    Returns:
        the summary dict (also written to ``out_dir/summary.json``); ``files_per_second`` counts only the files
        processed in this run (``processed_this_run``), not the ones reused from an earlier run.
    Raises:
        PreprocessError: a bad option or path, no structure files in ``raw_dir``, an ``out_dir`` of another
            ``raw_dir`` (checked before anything is written), or a worker that died.
        PreprocessInterrupted: Ctrl-C (the shards written so far are kept).
    """
    start = time.perf_counter()
    raw_dir = Path(raw_dir).expanduser()
    out_dir = Path(out_dir).expanduser()
    num_workers, min_length, dssp_method, chunksize = checks.check_options(num_workers, min_length, dssp_method,
                                                                            chunksize)
    checks.check_paths(raw_dir, out_dir)
    params = PreprocessParams(min_length=min_length, dssp_method=dssp_method)
    all_files = list_input_files(raw_dir, exclude=out_dir)
    structure_files = [f for f in all_files if is_structure_file(f)]
    ignored = [f for f in all_files if not is_structure_file(f)]
    if not structure_files:
        raise PreprocessError(checks.no_structure_files_message(raw_dir, len(ignored)))
    checks.check_source(raw_dir, out_dir, structure_files, overwrite)
    out_dir.mkdir(parents=True, exist_ok=True)
    checks.record_source(raw_dir, out_dir)
    handler = _setup_file_log(out_dir)
    try:
        for stale in (out_dir / "shards").glob("*/.*.tmp.npz"):
            stale.unlink(missing_ok=True)
        todo = [f for f in structure_files if not _shard_is_current(out_dir, raw_dir, f, params)]
        reused = len(structure_files) - len(todo)
        log.info(
            "run: raw_dir=%s out_dir=%s files=%d structure files=%d to process=%d (resumed: %d done) "
            "workers=%d params=%s",
            raw_dir,
            out_dir,
            len(all_files),
            len(structure_files),
            len(todo),
            reused,
            num_workers,
            asdict(params),
        )
        for rel in ignored:
            log.info("IGNORED %s: %s", raw_dir / rel, IGNORED)
        todo.sort(key=lambda f: (-(raw_dir / f).stat().st_size, f))  # largest first: better load balance
        done = [0]
        t_work = time.perf_counter()
        try:
            _run_pool(raw_dir, out_dir, params, todo, num_workers, progress, chunksize, done)
            work_seconds = time.perf_counter() - t_work
            summary = consolidate(out_dir, structure_files, ignored)
        except KeyboardInterrupt:
            log.info("interrupted after %d of %d files", reused + done[0], len(structure_files))
            raise PreprocessInterrupted(reused + done[0], len(structure_files)) from None
        summary["seconds"] = round(time.perf_counter() - start, 2)
        summary["processed_this_run"] = len(todo)
        summary["reused_from_earlier_runs"] = reused
        summary["files_per_second"] = round(len(todo) / max(work_seconds, 1e-9), 2) if todo else 0.0
        summary["num_workers"] = num_workers
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        log.info("summary: %s", json.dumps(summary))
        return summary
    finally:
        log.removeHandler(handler)
        handler.close()


def _log_result(raw_dir: Path, rel: str, status: str, reason: str, n_chains: int, notes: list[str]) -> None:
    if status == "skipped":
        log.info("SKIPPED %s: %s", raw_dir / rel, reason)
    else:
        log.info("OK %s: %d chain(s)", raw_dir / rel, n_chains)
    for note in notes:  # bad or partial nucleotides: kept (atoms masked), not fatal
        log.info("NUCLEOTIDES %s: %s", raw_dir / rel, note)


def _work_many(rel_paths: list[str]) -> list[tuple[str, str, str, int, list[str]]]:
    return [_work(rel) for rel in rel_paths]


def _run_pool(
    raw_dir: Path,
    out_dir: Path,
    params: PreprocessParams,
    todo: list[str],
    num_workers: int,
    progress: bool,
    chunksize: int,
    done: list[int],
) -> None:
    """Process ``todo`` (in this process for num_workers <= 1, else in a process pool); ``done[0]`` counts the files
    finished (shard written).

    A worker that dies (e.g. killed for memory) stops the run with a :class:`PreprocessError` naming the
    files in flight; every shard written so far is kept, so re-running resumes. On Ctrl-C (``KeyboardInterrupt``)
    the tasks not started are cancelled, the files in progress are finished (and counted), and the interrupt goes on.
    """
    from tqdm import tqdm

    bar = tqdm(
        total=len(todo), desc="preprocess", unit="file", disable=not progress or not todo, smoothing=0.05
    )
    try:
        if num_workers <= 1:
            _init_worker(str(raw_dir), str(out_dir), params)
            for rel in todo:
                _log_result(raw_dir, *_work(rel))
                done[0] += 1
                bar.update()
            return
        import multiprocessing as mp

        # heavy imports happen here, once, and are inherited by the forked workers
        import biotite.structure.io.pdb
        import biotite.structure.io.pdbx  # noqa: F401
        import scipy.spatial  # noqa: F401

        import flowbb.geometry.checks  # noqa: F401 -- torch, for the radius of gyration of each chain

        context = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else None)
        size = max(1, chunksize)
        chunks = iter([todo[i : i + size] for i in range(0, len(todo), size)])
        with ProcessPoolExecutor(
            num_workers,
            mp_context=context,
            initializer=_init_worker,
            initargs=(str(raw_dir), str(out_dir), params, True),
        ) as pool:
            pending: dict = {}

            def submit() -> None:
                chunk = next(chunks, None)
                if chunk is not None:
                    pending[pool.submit(_work_many, chunk)] = chunk

            for _ in range(4 * num_workers):
                submit()
            try:
                _drain(pending, submit, raw_dir, bar, done)
            except KeyboardInterrupt:
                pool.shutdown(wait=True, cancel_futures=True)  # the files in progress finish; their shards count
                for future in pending:
                    if future.done() and not future.cancelled() and future.exception() is None:
                        done[0] += len(future.result())
                raise
    finally:
        bar.close()


def _drain(pending: dict, submit: Callable[[], None], raw_dir: Path, bar: Any, done: list[int]) -> None:
    """Collect finished chunks of the pool (submitting one new chunk per finished one) until none is pending."""
    while pending:
        finished, _ = wait(pending, return_when=FIRST_COMPLETED)
        for future in finished:
            chunk = pending.pop(future)
            try:
                results = future.result()
            except BrokenProcessPool:
                in_flight = sorted({f for c in [chunk, *pending.values()] for f in c})
                raise PreprocessError(
                    "a worker process died (out of memory?) while processing one of "
                    f"{', '.join(str(raw_dir / f) for f in in_flight[:20])}; the files done so far are "
                    "kept: re-run the same command to resume (move a file that keeps failing out of "
                    "raw_dir)"
                ) from None
            for result in results:
                _log_result(raw_dir, *result)
                done[0] += 1
                bar.update()
            submit()


def format_summary(summary: dict) -> str:
    """Human-readable summary table (plain text)."""
    rows = [
        ("input files", summary["files_total"]),
        ("  structure files", summary["structure_files"]),
        ("  ignored (other file names)", summary["files_ignored"]),
        ("files with kept chains", summary["files_with_chains"]),
        ("files skipped", summary["files_skipped"]),
    ]
    rows += [(f"  skipped: {reason}", count) for reason, count in summary["skipped_by_reason"].items()]
    rows += [
        ("chains kept", summary["chains_kept"]),
        *((f"  {m}", n) for m, n in summary.get("chains_by_molecule", {}).items()),
        ("  of 60-512 modeled residues", summary["chains_60_512"]),
        ("short chains dropped", summary["short_chains_dropped"]),
        ("residues stored", summary["residues"]),
        ("processed this run", summary.get("processed_this_run", "")),
        ("  reused from earlier runs", summary.get("reused_from_earlier_runs", "")),
        ("time (s)", summary.get("seconds", "")),
        ("files / s (this run's files)", summary.get("files_per_second", "")),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
