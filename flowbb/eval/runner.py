"""Resumable self-consistency evaluation of a folder of backbone PDB files.

The folder's molecule type (``molecule: auto|protein|rna``; auto: C4' atoms and no CA mean RNA) picks the protocol:
RNA samples go to :func:`flowbb.eval.rna_eval.evaluate_rna` (geometry, novelty, diversity, pMoL; no designability).
What follows is the protein protocol.

For each sample: ProteinMPNN designs ``num_seqs`` sequences -> ESMFold folds them -> scRMSD / scTM / pLDDT
against the sample; secondary structure and geometry checks; novelty against an optional reference set.
Each sample's result is written atomically to ``out_dir/per_sample/<name>.json`` (the completion marker);
a re-run skips finished samples. Samples are processed in fixed same-length groups (their sequences are
folded together), so an interrupted-then-resumed run computes exactly what an uninterrupted one does.
At the end :mod:`flowbb.eval.report` writes ``sequences.csv``, ``samples.csv``, ``summary.json`` and plots.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from flowbb.errors import UserError
from flowbb.eval.inverse_folding import has_native_sequence
from flowbb.eval.metrics import backbone_metrics, self_consistency, summarize_designs
from flowbb.eval.samples import (
    Sample,
    detect_molecule,
    discover_samples,
    read_sample,
    same_length_groups,
    sample_seed,
)
from flowbb.plain import to_plain

log = logging.getLogger(__name__)

PER_SAMPLE_DIR = "per_sample"
FOLDED_DIR = "folded"
# config keys that change how fast, not what, is computed (left out of the fingerprint)
_RUNTIME_KEYS = {
    "device",
    "max_tokens_per_batch",
    "max_batch_size",
    "chunk_size",
    "chunk_min_length",
    "cpu_threads",
}


class EvaluationError(UserError, RuntimeError):
    """A user-facing evaluation error (bad folder, results from another configuration, ...)."""


def _strip_runtime(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _strip_runtime(v) for k, v in d.items() if k not in _RUNTIME_KEYS}
    return d


def fingerprint(cfg: Any) -> str:
    """Digest of the settings that determine the results (models, sampling, seed, thresholds, reference)."""
    c = to_plain(cfg)
    payload = {
        "folding": _strip_runtime(c.get("folding")),
        "inverse_folding": _strip_runtime(c.get("inverse_folding")),
        "seed": c.get("seed"),
        "designable_rmsd": c.get("designable_rmsd"),
        "chain": c.get("chain"),
        "clash_threshold": c.get("clash_threshold"),
        "reference": str(Path(c["reference"]).expanduser().resolve()) if c.get("reference") else None,
        "novelty": _strip_runtime({k: v for k, v in (c.get("novelty") or {}).items() if k != "num_workers"}),
    }
    return hashlib.sha1(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON to a temporary file in the same folder, fsync, then rename over ``path``."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w") as fh:
        json.dump(obj, fh, indent=1, allow_nan=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def load_done(per_sample_dir: Path, fp: str, overwrite: bool) -> dict[str, dict]:
    """Finished results by sample name; results of another configuration are an error (or removed)."""
    done: dict[str, dict] = {}
    if not per_sample_dir.is_dir():
        return done
    for f in sorted(per_sample_dir.glob("*.json")):
        try:
            rec = json.loads(f.read_text())
        except (OSError, json.JSONDecodeError):
            log.warning("ignoring unreadable result %s (it will be recomputed)", f)
            continue
        if rec.get("fingerprint") != fp:
            if overwrite:
                f.unlink()
                continue
            raise EvaluationError(
                f"{per_sample_dir.parent} holds results of another evaluation configuration ({f.name}); "
                "use a new out_dir, or overwrite=true to discard them"
            )
        done[rec["name"]] = rec
    return done


def _novelty_needed(cfg: Any, designable: bool) -> bool:
    return not bool(cfg["novelty"].get("designable_only", True)) or designable


def evaluate_group(
    group: list[Sample],
    designer: Any,
    folder: Any,
    cfg: Any,
    fp: str,
    out_dir: Path,
    searcher: Any = None,
    skip: set[str] | None = None,
    progress: Any = None,
) -> list[dict]:
    """Evaluate one same-length group and write each result not in ``skip``.

    Args:
        group: samples of one length.
        designer: :class:`~flowbb.eval.inverse_folding.ProteinMPNNDesigner`.
        folder: :class:`~flowbb.eval.folding.ESMFoldPredictor`.
        cfg: evaluation config (``seed``, ``designable_rmsd``, ``save_folded``, ``novelty``, ``clash_threshold``).
        fp: configuration fingerprint stored in each record.
        out_dir: output folder.
        searcher: :class:`~flowbb.eval.novelty.NoveltySearcher` or ``None``.
        skip: names already finished (computed again for identical batching, not written).
        progress: optional callable ``progress(stage: str)``.
    Returns:
        the records of the group.
    """
    skip = skip or set()
    note = progress or (lambda stage: None)
    designs, t_design = {}, {}
    for s in group:
        note(f"ProteinMPNN {s.name}")
        t0 = time.perf_counter()
        designs[s.name] = designer.design(
            s.atoms,
            s.atom_mask,
            s.residue_index,
            native_sequence=s.sequence,
            seed=sample_seed(cfg["seed"], s.name),
        )
        t_design[s.name] = time.perf_counter() - t0
    seqs = [d.sequence for s in group for d in designs[s.name]]
    note(f"ESMFold {len(seqs)} sequences (L={group[0].length})")
    t0 = time.perf_counter()
    folded = folder.fold(seqs, with_pdb=bool(cfg.get("save_folded", True)))
    t_fold = (time.perf_counter() - t0) / len(group)
    records, k = [], 0
    for s in group:
        ds = designs[s.name]
        fs = folded[k : k + len(ds)]
        k += len(ds)
        if s.name in skip:
            continue
        note(f"metrics {s.name}")
        t0 = time.perf_counter()
        per_seq = self_consistency(s.ca, fs, s.ca_mask)
        summary = summarize_designs(per_seq, float(cfg["designable_rmsd"]))
        geometry = backbone_metrics(
            s.atoms[None],
            s.atom_mask[None],
            [s.sequence if has_native_sequence(s.sequence) else None],
            float(cfg.get("clash_threshold", 3.0)),
        )[0]
        geometry.pop("length")  # modeled residues: the record's num_modeled
        metrics: dict[str, Any] = {**summary, **geometry}
        recs = [d.recovery for d in ds if d.recovery is not None]
        metrics["native_recovery"] = float(np.mean(recs)) if recs else None
        metrics["best_sequence"] = ds[summary["best_seq_idx"]].sequence
        t_metrics = time.perf_counter() - t0
        t_novelty = 0.0
        metrics.update(novelty_tm=None, novelty_match=None, novelty_compared=None)
        if searcher is not None and _novelty_needed(cfg, summary["designable"]):
            note(f"novelty {s.name}")
            t0 = time.perf_counter()
            hit = searcher.search(s.ca[s.ca_mask])
            t_novelty = time.perf_counter() - t0
            metrics.update(novelty_tm=hit.max_tm, novelty_match=hit.match, novelty_compared=hit.num_compared)
        rows = []
        for i, (d, f, m) in enumerate(zip(ds, fs, per_seq)):
            pdb_rel = None
            if f.pdb_string is not None:
                pdb_rel = f"{FOLDED_DIR}/{s.file_stem}/seq_{i}.pdb"
                _write_text_atomic(out_dir / pdb_rel, f.pdb_string)
            rows.append(
                {
                    "seq_idx": i,
                    "sequence": d.sequence,
                    "mpnn_score": d.score,
                    "native_recovery": d.recovery,
                    **m,
                    "folded_pdb": pdb_rel,
                }
            )
        rec = {
            "fingerprint": fp,
            "name": s.name,
            "file": str(s.path),
            "chain_id": s.chain_id,
            "length": s.length,
            "num_modeled": int(s.ca_mask.sum()),
            "native_sequence": s.sequence,
            "metrics": metrics,
            "designs": rows,
            "timing": {
                "inverse_folding_s": t_design[s.name],
                "folding_s": t_fold,
                "metrics_s": t_metrics,
                "novelty_s": t_novelty,
            },
            "models": {
                "folding": folder.name,
                "folding_meaningless": folder.meaningless,
                "inverse_folding": designer.weights_path.name,
                "ca_only": designer.ca_only,
            },
        }
        write_json_atomic(out_dir / PER_SAMPLE_DIR / f"{s.file_stem}.json", rec)
        records.append(rec)
    return records


def _progress(enabled: bool):
    if not enabled:
        return nullcontext(None)
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[stage]}"),
    )


def _instantiate(node: Any) -> Any:
    """``hydra.utils.instantiate``, re-raising the model's own error (e.g. missing weights) unwrapped."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(node)
    except InstantiationException as err:
        if isinstance(err.__cause__, (RuntimeError, OSError, ValueError, ImportError)):
            raise err.__cause__ from None
        raise


def read_sample_files(
    files: list[Path], root: Path, read: Callable[[Path, Path, str | None], Any], chain: str | None = None,
    what: str = "sample",
) -> tuple[list[Any], list[str]]:
    """Every readable sample of ``files`` (``read(path, root, chain)``: protein or RNA sample) and the unreadable
    ones as ``"path: reason"`` lines (skipped with a warning).

    Raises:
        EvaluationError: no file is readable, or two files map to the same sample name.
    """
    samples, unreadable = [], []
    for p in files:
        try:
            samples.append(read(p, root, chain))
        except Exception as err:  # noqa: BLE001 - any unreadable sample is reported and skipped
            unreadable.append(f"{p}: {err}")
            log.warning("skipping unreadable sample %s: %s", p, err)
    if not samples:
        raise EvaluationError(f"samples_dir={root}: no readable {what} ({len(unreadable)} unreadable)")
    stems: dict[str, Path] = {}
    for s in samples:
        if s.file_stem in stems:
            raise EvaluationError(f"samples {stems[s.file_stem]} and {s.path} map to the same sample name {s.name!r}")
        stems[s.file_stem] = s.path
    return samples, unreadable


def evaluate(cfg: Any) -> dict:
    """Run (or resume) an evaluation; see ``configs/evaluate.yaml`` for the settings.

    Returns:
        the summary written to ``out_dir/summary.json``.
    Raises:
        EvaluationError / FileNotFoundError for bad inputs,
        :class:`~flowbb.eval.folding.FoldingWeightsNotFound` when ESMFold weights are missing.
    """
    from flowbb.eval.report import write_reports

    if not cfg.get("samples_dir"):
        raise EvaluationError("samples_dir=... is required (a folder of backbone PDB/mmCIF files)")
    if not cfg.get("out_dir"):
        raise EvaluationError("out_dir=... is required")
    root = Path(str(cfg["samples_dir"])).expanduser()
    out_dir = Path(str(cfg["out_dir"])).expanduser()
    (out_dir / PER_SAMPLE_DIR).mkdir(parents=True, exist_ok=True)
    fp = fingerprint(cfg)
    files = discover_samples(root, list(cfg.get("exclude") or []))
    try:
        molecule = detect_molecule(files, cfg.get("molecule", "auto"))
    except ValueError as err:
        raise EvaluationError(str(err)) from None
    if molecule == "rna":
        from flowbb.eval.rna_eval import evaluate_rna

        return evaluate_rna(cfg, root, out_dir, files)
    done = load_done(out_dir / PER_SAMPLE_DIR, fp, bool(cfg.get("overwrite", False)))
    if bool(cfg.get("overwrite", False)) and not done:
        shutil.rmtree(out_dir / FOLDED_DIR, ignore_errors=True)
    samples, unreadable = read_sample_files(files, root, read_sample, cfg.get("chain"))
    groups = same_length_groups(samples, int(cfg.get("group_size", 4)))
    pending = [g for g in groups if any(s.name not in done for s in g)]
    n_todo = sum(1 for g in pending for s in g if s.name not in done)
    log.info(
        "%d samples (%d finished, %d to evaluate) in %d groups",
        len(samples),
        len(samples) - n_todo,
        n_todo,
        len(pending),
    )

    if pending:
        folder = _instantiate(cfg["folding"])  # first: missing ESMFold weights fail before any work
        designer = _instantiate(cfg["inverse_folding"])
        searcher = None
        if cfg.get("reference"):
            from flowbb.eval.novelty import novelty_searcher

            searcher = novelty_searcher(cfg["reference"], cfg["novelty"], out_dir / "reference_cache.npz")
        try:
            with _progress(bool(cfg.get("progress", True))) as prog:
                task = None
                if prog is not None:
                    task = prog.add_task(
                        "evaluate", total=len(samples), completed=len(samples) - n_todo, stage=""
                    )
                for g in pending:
                    skip = {s.name for s in g if s.name in done}

                    def note(stage: str) -> None:
                        if prog is not None:
                            prog.update(task, stage=stage)

                    for rec in evaluate_group(g, designer, folder, cfg, fp, out_dir, searcher, skip, note):
                        done[rec["name"]] = rec
                        if prog is not None:
                            prog.advance(task)
        finally:
            if searcher is not None:
                searcher.close()
    records = [done[s.name] for s in sorted(samples, key=lambda s: (s.length, s.name))]
    return write_reports(records, samples, out_dir, cfg, unreadable=unreadable)
