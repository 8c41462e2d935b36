"""Evaluation reports: ``sequences.csv``, ``samples.csv``, ``summary.json`` and PNG plots."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from flowbb.eval.diversity import diversity
from flowbb.eval.samples import Sample

MEANINGLESS_WARNING = (
    "folding model is randomly initialised (folding=tiny_random): scRMSD, scTM, pLDDT, designability and "
    "everything derived from them are meaningless; this run only checks the pipeline"
)

SAMPLE_COLUMNS = [
    "name",
    "chain_id",
    "length",
    "num_modeled",
    "designable",
    "sc_rmsd",
    "sc_tm",
    "best_seq_idx",
    "best_sc_tm",
    "best_plddt",
    "mean_plddt",
    "native_recovery",
    "helix_frac",
    "strand_frac",
    "coil_frac",
    "ca_ca_mean",
    "ca_ca_deviation",
    "clashes",
    "clashes_per_100",
    "rg",
    "rg_ratio",
    "novelty_tm",
    "novelty_match",
    "novelty_compared",
    "best_sequence",
    "secondary_structure",
    "file",
]
SEQUENCE_COLUMNS = [
    "name",
    "length",
    "seq_idx",
    "sequence",
    "mpnn_score",
    "native_recovery",
    "sc_rmsd",
    "sc_tm",
    "plddt",
    "ptm",
    "folded_pdb",
]


def sample_table(records: list[dict]) -> pd.DataFrame:
    """One row per backbone (columns :data:`SAMPLE_COLUMNS`)."""
    rows = [
        {**{k: r[k] for k in ("name", "chain_id", "length", "num_modeled", "file")}, **r["metrics"]}
        for r in records
    ]
    return pd.DataFrame(rows, columns=SAMPLE_COLUMNS)


def sequence_table(records: list[dict]) -> pd.DataFrame:
    """One row per designed sequence (columns :data:`SEQUENCE_COLUMNS`)."""
    rows = [{"name": r["name"], "length": r["length"], **d} for r in records for d in r["designs"]]
    return pd.DataFrame(rows, columns=SEQUENCE_COLUMNS)


def _f(x: Any) -> float | None:
    """float or None for NaN/None (strict JSON)."""
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) or math.isinf(x) else x


def _clean(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return _f(obj)
    return obj


def group_stats(df: pd.DataFrame, novel_tm: float = 0.5) -> dict[str, Any]:
    """Summary statistics of a set of samples (rows of :func:`sample_table`)."""
    des = df["designable"].astype(bool)
    nov = pd.to_numeric(df["novelty_tm"], errors="coerce")
    rec = pd.to_numeric(df["native_recovery"], errors="coerce")
    return {
        "n": len(df),
        "num_designable": int(des.sum()),
        "designability": _f(des.mean()) if len(df) else None,
        "sc_rmsd_mean": _f(df["sc_rmsd"].mean()),
        "sc_rmsd_median": _f(df["sc_rmsd"].median()),
        "sc_tm_mean": _f(df["sc_tm"].mean()),
        "sc_tm_median": _f(df["sc_tm"].median()),
        "plddt_mean": _f(df["best_plddt"].mean()),
        "native_recovery_mean": _f(rec.mean()) if rec.notna().any() else None,
        "novelty": {
            "n": int(nov.notna().sum()),
            "max_tm_mean": _f(nov.mean()) if nov.notna().any() else None,
            "max_tm_median": _f(nov.median()) if nov.notna().any() else None,
            "designable_max_tm_mean": _f(nov[des].mean()) if nov[des].notna().any() else None,
            f"fraction_max_tm_below_{novel_tm}": _f((nov[nov.notna()] < novel_tm).mean())
            if nov.notna().any()
            else None,
        },
        "secondary_structure": {k: _f(df[k].mean()) for k in ("helix_frac", "strand_frac", "coil_frac")},
        "geometry": {
            f"{key}_mean": _f(df[key].mean())
            for key in ("ca_ca_mean", "ca_ca_deviation", "clashes", "clashes_per_100", "rg", "rg_ratio")
        },
    }


def combine_diversity(per_length: list[dict[str, Any]]) -> dict[str, Any]:
    """Overall diversity from per-length results: clusters add up; mean pairwise TM is pair-weighted."""
    n = sum(d["n"] for d in per_length)
    pairs = sum(d["num_pairs"] for d in per_length)
    clusters = sum(d["num_clusters"] for d in per_length)
    tm_sum = sum(d["mean_pairwise_tm"] * d["num_pairs"] for d in per_length if d["num_pairs"])
    return {
        "n": n,
        "mean_pairwise_tm": tm_sum / pairs if pairs else None,
        "num_pairs": pairs,
        "num_clusters": clusters,
        "cluster_fraction": clusters / n if n else None,
    }


def write_csv_atomic(df: pd.DataFrame, path: Path) -> None:
    """CSV via a temporary file and rename."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    df.to_csv(tmp, index=False)
    os.replace(tmp, path)


def make_plots(df: pd.DataFrame, out_dir: Path, designable_rmsd: float, meaningless: bool) -> list[str]:
    """``sc_rmsd_by_length.png``, ``designability_by_length.png``, ``secondary_structure_by_length.png``."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    tag = "  [tiny_random: meaningless]" if meaningless else ""
    lengths = sorted(df["length"].unique())
    pos = np.arange(len(lengths))
    written = []

    fig, ax = plt.subplots(figsize=(max(4, 1.0 * len(lengths) + 2), 3.5))
    data = [df.loc[df["length"] == L, "sc_rmsd"].dropna().to_numpy() for L in lengths]
    ax.boxplot(data, positions=pos, widths=0.5, showfliers=False)
    rng = np.random.default_rng(0)
    for p, d in zip(pos, data):
        ax.scatter(p + rng.uniform(-0.15, 0.15, len(d)), d, s=10, alpha=0.6, color="tab:blue")
    ax.axhline(designable_rmsd, color="tab:red", ls="--", lw=1, label=f"designable < {designable_rmsd:g} Å")
    ax.set_xticks(pos, [str(L) for L in lengths])
    ax.set_xlabel("length")
    ax.set_ylabel("scRMSD (Å, best of designs)")
    ax.set_title("scRMSD by length" + tag, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "sc_rmsd_by_length.png", dpi=120)
    plt.close(fig)
    written.append("sc_rmsd_by_length.png")

    fig, ax = plt.subplots(figsize=(max(4, 1.0 * len(lengths) + 2), 3.5))
    frac = [df.loc[df["length"] == L, "designable"].astype(bool).mean() for L in lengths]
    ax.bar(pos, frac, color="tab:green")
    ax.set_xticks(pos, [str(L) for L in lengths])
    ax.set_ylim(0, 1)
    ax.set_xlabel("length")
    ax.set_ylabel(f"designability (scRMSD < {designable_rmsd:g} Å)")
    ax.set_title("Designability by length" + tag, fontsize=9)
    fig.tight_layout()
    fig.savefig(out_dir / "designability_by_length.png", dpi=120)
    plt.close(fig)
    written.append("designability_by_length.png")

    fig, ax = plt.subplots(figsize=(max(4, 1.0 * len(lengths) + 2), 3.5))
    bottom = np.zeros(len(lengths))
    for key, label, color in (
        ("helix_frac", "helix", "tab:red"),
        ("strand_frac", "strand", "tab:blue"),
        ("coil_frac", "coil", "tab:gray"),
    ):
        vals = np.array([df.loc[df["length"] == L, key].mean() for L in lengths])
        ax.bar(pos, vals, bottom=bottom, label=label, color=color)
        bottom += vals
    ax.set_xticks(pos, [str(L) for L in lengths])
    ax.set_ylim(0, 1)
    ax.set_xlabel("length")
    ax.set_ylabel("fraction of residues (DSSP)")
    ax.set_title("Secondary structure by length", fontsize=9)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(out_dir / "secondary_structure_by_length.png", dpi=120)
    plt.close(fig)
    written.append("secondary_structure_by_length.png")
    return written


def write_reports(
    records: list[dict], samples: list[Sample], out_dir: Path, cfg: Any, unreadable: list[str] | None = None
) -> dict:
    """Write ``sequences.csv``, ``samples.csv``, ``summary.json`` and plots; returns the summary.

    Args:
        records: per-sample results (sorted by length, name).
        samples: the samples (CA traces for diversity).
        out_dir: output folder.
        cfg: evaluation config (``designable_rmsd``, ``diversity``, ``plots``, ...).
        unreadable: files that could not be read.
    """
    df = sample_table(records)
    write_csv_atomic(df, out_dir / "samples.csv")
    write_csv_atomic(sequence_table(records), out_dir / "sequences.csv")

    dv = cfg.get("diversity") or {}
    by_name = {s.name: s for s in samples}
    meaningless = any(r["models"]["folding_meaningless"] for r in records)
    models = records[0]["models"] if records else {}
    per_length, div_list = {}, []
    for L, sub in df.groupby("length", sort=True):
        chosen = sub[sub["designable"].astype(bool)] if dv.get("designable_only", True) else sub
        cas = [by_name[n].ca[by_name[n].ca_mask] for n in chosen["name"]]
        div = diversity(cas, float(dv.get("cluster_tm", 0.5)), int(dv.get("num_workers", 0)))
        div_list.append(div)
        per_length[str(int(L))] = {**group_stats(sub), "diversity": div}
    overall = {**group_stats(df), "diversity": combine_diversity(div_list)}
    timing_keys = ("inverse_folding_s", "folding_s", "metrics_s", "novelty_s")
    timing = (
        {f"mean_{k}": float(np.mean([r["timing"][k] for r in records])) for k in timing_keys}
        if records
        else {}
    )
    c = cfg
    summary = {
        "molecule": "protein",
        "num_samples": len(records),
        "num_unreadable": len(unreadable or []),
        "unreadable": list(unreadable or []),
        "meaningless": meaningless,
        "warning": MEANINGLESS_WARNING if meaningless else None,
        "models": models,
        "settings": {
            "designable_rmsd": float(c["designable_rmsd"]),
            "num_seqs": int(c["inverse_folding"].get("num_seqs", 8)),
            "temperature": float(c["inverse_folding"].get("temperature", 0.1)),
            "seed": int(c["seed"]),
            "reference": str(c.get("reference")) if c.get("reference") else None,
            "novelty_designable_only": bool(c["novelty"].get("designable_only", True)),
            "diversity_designable_only": bool(dv.get("designable_only", True)),
            "cluster_tm": float(dv.get("cluster_tm", 0.5)),
        },
        "overall": overall,
        "per_length": per_length,
        "timing": timing,
    }
    if cfg.get("plots", True) and len(df):
        summary["plots"] = make_plots(df, out_dir, float(c["designable_rmsd"]), meaningless)
    summary = _clean(summary)
    tmp = out_dir / f".summary.json.tmp{os.getpid()}"
    tmp.write_text(json.dumps(summary, indent=2, allow_nan=False))
    os.replace(tmp, out_dir / "summary.json")
    return summary
