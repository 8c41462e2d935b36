"""Resumable evaluation of a folder of RNA backbone samples (as ``scripts/sample.py`` writes them from an RNA
checkpoint: ``length_<L>/sample_<i>.pdb`` with the 12 rebuilt atoms per nucleotide).

No self-consistency step: the RNA protocol (gRNAde inverse folding -> RhoFold refolding) needs weights that are not
installed, and the summary says so (:data:`~flowbb.eval.samples.DESIGNABILITY_NOT_AVAILABLE_RNA`). Per sample:
geometry by :func:`flowbb.eval.metrics.rna_backbone_metrics` (C4'-C4', clashes, Rg, bonds and angles), novelty
(max TM-score of the C4' trace to a reference set's C4' traces) and, when lociPARSE is installed, its pMoL of the
backbone read as poly-A (``pmol_poly_a``: sampled nucleotides are named N, written with an N9 base atom, which
lociPARSE would read as a pyrimidine N1). Diversity (pairwise TM of C4' traces per length) is computed in
:mod:`flowbb.eval.rna_report`. Results go to ``out_dir/per_sample/<name>.json`` (resume markers) as for proteins.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flowbb.data.nucleic import read_rna_chains
from flowbb.eval.novelty import novelty_searcher
from flowbb.eval.samples import sample_name
from flowbb.plain import to_plain

log = logging.getLogger(__name__)

#: per-sample column of lociPARSE's pMoL of the backbone written as poly-A
PMOL_COLUMN = "pmol_poly_a"


@dataclass
class RNASample:
    """One RNA backbone to evaluate.

    Attributes:
        name: the file's path relative to the samples folder, without extension (``length_100/sample_0``).
        path: the file.
        chain_id: the chain used.
        sequence: parent one-letter codes (``N`` for generated backbones).
        atoms: ``[L, 12, 3]`` float32 in :data:`flowbb.geometry.rna.ATOM_ORDER` (Å), 0 where missing.
        atom_mask: ``[L, 12]`` bool.
    """

    name: str
    path: Path
    chain_id: str
    sequence: str
    atoms: np.ndarray
    atom_mask: np.ndarray

    @property
    def length(self) -> int:
        """Number of nucleotides L."""
        return len(self.sequence)

    @property
    def res_mask(self) -> np.ndarray:
        """``[L]`` bool: the nucleotide has its frame atoms C4', O4', C3'."""
        return self.atom_mask[:, :3].all(axis=1)

    @property
    def trace_mask(self) -> np.ndarray:
        """``[L]`` bool: the nucleotide has a C4' atom."""
        return self.atom_mask[:, 0]

    @property
    def trace(self) -> np.ndarray:
        """``[n, 3]`` C4' coordinates of the nucleotides that have one."""
        return self.atoms[self.trace_mask, 0]

    @property
    def file_stem(self) -> str:
        """``name`` made safe as a single file name."""
        return self.name.replace("/", "__").replace("\\", "__")


def read_rna_sample(path: Path, root: Path, chain: str | None = None) -> RNASample:
    """The RNA chain ``chain`` (default: the first) of ``path`` (:func:`flowbb.data.nucleic.read_rna_chains`).

    Raises:
        StructureReadError: unreadable file or no RNA chain; ValueError: the chain is missing.
    """
    chains = read_rna_chains(path)
    found = chains if chain is None else [c for c in chains if c.chain_id == chain]
    if not found:
        raise ValueError(f"{path}: no RNA chain {chain!r} (chains: {[c.chain_id for c in chains]})")
    ch = found[0]
    return RNASample(
        sample_name(path, root),
        path,
        ch.chain_id,
        ch.sequence,
        np.asarray(ch.atoms, dtype=np.float32),
        np.asarray(ch.atom_mask, dtype=bool),
    )


def pmol_setting(cfg: Any) -> bool:
    """Whether to score pMoL: ``rna.pmol`` auto (when lociPARSE is installed), true (required) or false.

    Raises:
        ModuleNotFoundError: ``rna.pmol=true`` without lociPARSE.
    """
    from flowbb.eval.rna_quality import lociparse_available

    value = str((cfg.get("rna") or {}).get("pmol", "auto")).lower()
    if value in ("false", "0", "none", "off"):
        return False
    if value in ("true", "1", "on") and not lociparse_available():
        raise ModuleNotFoundError(
            "rna.pmol=true but lociPARSE is not installed (pip install --no-deps lociparse)"
        )
    return lociparse_available()


def rna_fingerprint(cfg: Any, pmol: bool) -> str:
    """Digest of the settings that determine RNA results (reference, novelty settings, chain, pMoL)."""
    c = to_plain(cfg)
    payload = {
        "molecule": "rna",
        "chain": c.get("chain"),
        "reference": str(Path(c["reference"]).expanduser().resolve()) if c.get("reference") else None,
        "novelty": {
            k: v for k, v in (c.get("novelty") or {}).items() if k not in ("num_workers", "designable_only")
        },
        "pmol": pmol,
    }
    return hashlib.sha1(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def evaluate_rna_sample(s: RNASample, fp: str, searcher: Any = None, scorer: Any = None) -> dict:
    """The result record of one RNA sample (keys as the protein records: ``metrics``, ``timing``, ...).

    Args:
        s: the sample.
        fp: configuration fingerprint stored in the record.
        searcher: :class:`~flowbb.eval.novelty.NoveltySearcher` over C4' traces, or None.
        scorer: :class:`~flowbb.eval.rna_quality.LociParseScorer`, or None.
    """
    from flowbb.eval.metrics import rna_backbone_metrics

    t0 = time.perf_counter()
    geometry = rna_backbone_metrics(
        torch.from_numpy(s.atoms)[None],
        torch.from_numpy(s.res_mask)[None],
        torch.from_numpy(s.atom_mask)[None],
    )[0]
    geometry.pop("length")  # modeled nucleotides: the record's num_modeled
    metrics: dict[str, Any] = dict(geometry)
    t_metrics = time.perf_counter() - t0
    metrics.update(novelty_tm=None, novelty_match=None, novelty_compared=None, **{PMOL_COLUMN: None})
    t0 = time.perf_counter()
    if searcher is not None and len(s.trace) >= 3:
        hit = searcher.search(s.trace)
        metrics.update(novelty_tm=hit.max_tm, novelty_match=hit.match, novelty_compared=hit.num_compared)
    t_novelty = time.perf_counter() - t0
    t0 = time.perf_counter()
    if scorer is not None:
        metrics[PMOL_COLUMN] = scorer.score_atoms(s.atoms, "A" * s.length, s.atom_mask)
    t_pmol = time.perf_counter() - t0
    return {
        "fingerprint": fp,
        "molecule": "rna",
        "name": s.name,
        "file": str(s.path),
        "chain_id": s.chain_id,
        "length": s.length,
        "num_modeled": int(s.res_mask.sum()),
        "native_sequence": s.sequence,
        "metrics": metrics,
        "timing": {"metrics_s": t_metrics, "novelty_s": t_novelty, "pmol_s": t_pmol},
        "models": {"pmol": "lociPARSE" if scorer is not None else None},
    }


def evaluate_rna(cfg: Any, root: Path, out_dir: Path, files: list[Path]) -> dict:
    """Evaluate (or resume) a folder of RNA samples; writes per-sample records and the reports.

    Args:
        cfg: evaluation config (``chain``, ``reference``, ``novelty``, ``diversity``, ``rna.pmol``, ``overwrite``).
        root: the samples folder; ``files``: its structure files.
        out_dir: output folder (``per_sample/`` exists).
    Returns:
        the summary written to ``out_dir/summary.json``.
    """
    from flowbb.eval.rna_report import write_rna_reports
    from flowbb.eval.runner import (
        PER_SAMPLE_DIR,
        _progress,
        load_done,
        read_sample_files,
        write_json_atomic,
    )

    pmol = pmol_setting(cfg)
    fp = rna_fingerprint(cfg, pmol)
    done = load_done(out_dir / PER_SAMPLE_DIR, fp, bool(cfg.get("overwrite", False)))
    samples, unreadable = read_sample_files(files, root, read_rna_sample, cfg.get("chain"), "RNA sample")
    todo = [s for s in sorted(samples, key=lambda s: (s.length, s.name)) if s.name not in done]
    log.info(
        "%d RNA samples (%d finished, %d to evaluate)", len(samples), len(samples) - len(todo), len(todo)
    )
    if todo:
        searcher = scorer = None
        if pmol:
            from flowbb.eval.rna_quality import LociParseScorer

            scorer = LociParseScorer()
        if cfg.get("reference"):
            searcher = novelty_searcher(cfg["reference"], cfg["novelty"], out_dir / "reference_cache_rna.npz", "rna")
        try:
            with _progress(bool(cfg.get("progress", True))) as prog:
                task = (
                    None
                    if prog is None
                    else prog.add_task(
                        "evaluate", total=len(samples), completed=len(samples) - len(todo), stage=""
                    )
                )
                for s in todo:
                    if prog is not None:
                        prog.update(task, stage=s.name)
                    rec = evaluate_rna_sample(s, fp, searcher, scorer)
                    write_json_atomic(out_dir / PER_SAMPLE_DIR / f"{s.file_stem}.json", rec)
                    done[s.name] = rec
                    if prog is not None:
                        prog.advance(task)
        finally:
            if searcher is not None:
                searcher.close()
    records = [done[s.name] for s in sorted(samples, key=lambda s: (s.length, s.name))]
    return write_rna_reports(records, samples, out_dir, cfg, unreadable=unreadable)
