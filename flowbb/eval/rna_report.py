"""Reports of an RNA evaluation: ``samples.csv``, ``summary.json`` and ``report.md``.

Diversity is computed here: pairwise TM-scores of the C4' traces of all samples of each length (there is no
designability filter for RNA) and single-linkage clusters at ``diversity.cluster_tm``. TM-scores of C4' traces use
TM-align's protein d0 (:mod:`flowbb.eval.tm`), so they are not on the scale of US-align's RNA mode.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from flowbb.eval.diversity import diversity
from flowbb.eval.report import _clean, _f, combine_diversity, write_csv_atomic
from flowbb.eval.rna_eval import PMOL_COLUMN, RNASample
from flowbb.eval.samples import DESIGNABILITY_NOT_AVAILABLE_RNA

#: per-sample geometry columns (keys of :func:`flowbb.eval.metrics.rna_backbone_metrics`, less ``length``)
RNA_GEOMETRY_COLUMNS = [
    "c4_c4_mean",
    "c4_c4_deviation",
    "c4_c4_in_range",
    "clashes",
    "clashes_per_100",
    "rg",
    "rg_ratio",
    "bond_deviation",
    "angle_deviation",
    "o3p_mean",
]
RNA_SAMPLE_COLUMNS = [
    "name",
    "chain_id",
    "length",
    "num_modeled",
    *RNA_GEOMETRY_COLUMNS,
    PMOL_COLUMN,
    "novelty_tm",
    "novelty_match",
    "novelty_compared",
    "file",
]
TM_NOTE = "TM-scores on C4' traces with TM-align's protein d0 (not US-align's RNA scale)"
PMOL_NOTE = (
    f"{PMOL_COLUMN}: lociPARSE pMoL (0-1) of each backbone written as poly-A (sampled nucleotides are N, "
    "whose N9 base atom lociPARSE would read as a pyrimidine N1)"
)


def rna_sample_table(records: list[dict]) -> pd.DataFrame:
    """One row per RNA backbone (columns :data:`RNA_SAMPLE_COLUMNS`)."""
    rows = [
        {**{k: r[k] for k in ("name", "chain_id", "length", "num_modeled", "file")}, **r["metrics"]}
        for r in records
    ]
    return pd.DataFrame(rows, columns=RNA_SAMPLE_COLUMNS)


def rna_group_stats(df: pd.DataFrame, novel_tm: float = 0.5) -> dict[str, Any]:
    """Summary statistics of a set of RNA samples (rows of :func:`rna_sample_table`)."""
    nov = pd.to_numeric(df["novelty_tm"], errors="coerce")
    pmol = pd.to_numeric(df[PMOL_COLUMN], errors="coerce")
    return {
        "n": len(df),
        "designability": None,
        f"{PMOL_COLUMN}_mean": _f(pmol.mean()) if pmol.notna().any() else None,
        "novelty": {
            "n": int(nov.notna().sum()),
            "max_tm_mean": _f(nov.mean()) if nov.notna().any() else None,
            "max_tm_median": _f(nov.median()) if nov.notna().any() else None,
            f"fraction_max_tm_below_{novel_tm}": _f((nov[nov.notna()] < novel_tm).mean())
            if nov.notna().any()
            else None,
        },
        "geometry": {
            f"{key}_mean": _f(pd.to_numeric(df[key], errors="coerce").mean()) for key in RNA_GEOMETRY_COLUMNS
        },
    }


def _fmt(x: Any, spec: str = ".3f") -> str:
    return "n/a" if x is None else format(x, spec)


def markdown_report(summary: dict) -> str:
    """``report.md``: the overall and per-length figures of an RNA evaluation summary."""
    o = summary["overall"]
    lines = [
        "# RNA backbone evaluation",
        "",
        f"{summary['num_samples']} samples ({summary['num_unreadable']} unreadable).",
        "",
        f"- designability: {summary['designability']}",
        f"- pMoL: {'lociPARSE, backbones read as poly-A' if summary['models']['pmol'] else 'not computed'}",
        f"- reference for novelty: {summary['settings']['reference'] or 'none'}",
        f"- {TM_NOTE}",
        "",
        (
            "| length | n | C4'-C4' mean (Å) | in 5.5-6.5 Å | clashes / 100 | Rg ratio | bond dev (Å) "
            f"| angle dev (°) | O3'-P (Å) | {PMOL_COLUMN} | novelty max-TM | pairwise TM | clusters |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, st in [*summary["per_length"].items(), ("all", o)]:
        g, d = st["geometry"], st["diversity"]
        lines.append(
            f"| {label} | {st['n']} | {_fmt(g['c4_c4_mean_mean'], '.2f')} | {_fmt(g['c4_c4_in_range_mean'], '.2f')} "
            f"| {_fmt(g['clashes_per_100_mean'], '.1f')} | {_fmt(g['rg_ratio_mean'], '.2f')} "
            f"| {_fmt(g['bond_deviation_mean'])} | {_fmt(g['angle_deviation_mean'], '.1f')} "
            f"| {_fmt(g['o3p_mean_mean'], '.2f')} | {_fmt(st[f'{PMOL_COLUMN}_mean'])} "
            f"| {_fmt(st['novelty']['max_tm_mean'])} | {_fmt(d['mean_pairwise_tm'])} | {d['num_clusters']} |"
        )
    return "\n".join(lines) + "\n"


def write_rna_reports(
    records: list[dict],
    samples: list[RNASample],
    out_dir: Path,
    cfg: Any,
    unreadable: list[str] | None = None,
) -> dict:
    """Write ``samples.csv``, ``summary.json`` and ``report.md`` of an RNA evaluation; returns the summary.

    Args:
        records: per-sample results (sorted by length, name).
        samples: the samples (C4' traces for diversity).
        out_dir: output folder.
        cfg: evaluation config (``diversity``, ``novelty``, ``reference``).
        unreadable: files that could not be read.
    """
    df = rna_sample_table(records)
    write_csv_atomic(df, out_dir / "samples.csv")
    dv = cfg.get("diversity") or {}
    nv = cfg.get("novelty") or {}
    by_name = {s.name: s for s in samples}
    per_length, div_list = {}, []
    for L, sub in df.groupby("length", sort=True):
        traces = [by_name[n].trace for n in sub["name"] if len(by_name[n].trace) >= 3]
        div = diversity(traces, float(dv.get("cluster_tm", 0.5)), int(dv.get("num_workers", 0)))
        div_list.append(div)
        per_length[str(int(L))] = {**rna_group_stats(sub), "diversity": div}
    overall = {**rna_group_stats(df), "diversity": combine_diversity(div_list)}
    timing_keys = ("metrics_s", "novelty_s", "pmol_s")
    timing = (
        {f"mean_{k}": float(np.mean([r["timing"][k] for r in records])) for k in timing_keys}
        if records
        else {}
    )
    summary = {
        "molecule": "rna",
        "num_samples": len(records),
        "num_unreadable": len(unreadable or []),
        "unreadable": list(unreadable or []),
        "designability": DESIGNABILITY_NOT_AVAILABLE_RNA,
        "models": records[0]["models"] if records else {"pmol": None},
        "settings": {
            "reference": str(cfg.get("reference")) if cfg.get("reference") else None,
            "novelty_min_length_ratio": float(nv.get("min_length_ratio", 0.5)),
            "novelty_max_length_ratio": float(nv.get("max_length_ratio", 2.0)),
            "cluster_tm": float(dv.get("cluster_tm", 0.5)),
            "diversity_designable_only": False,
        },
        "notes": [TM_NOTE, PMOL_NOTE],
        "overall": overall,
        "per_length": per_length,
        "timing": timing,
    }
    summary = _clean(summary)
    tmp = out_dir / f".summary.json.tmp{os.getpid()}"
    tmp.write_text(json.dumps(summary, indent=2, allow_nan=False))
    os.replace(tmp, out_dir / "summary.json")
    tmp = out_dir / f".report.md.tmp{os.getpid()}"
    tmp.write_text(markdown_report(summary))
    os.replace(tmp, out_dir / "report.md")
    return summary
