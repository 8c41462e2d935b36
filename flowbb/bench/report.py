"""Scaling exponents and the report of a benchmark: FILE.json, FILE.md (markdown tables), FILE.png (log-log plot),
and a summary printed to the terminal (no torch; matplotlib with the Agg backend, imported when plotting).

Exponents (:func:`fit_exponents`): per group of rows (e.g. one implementation and mode), the least-squares slope of
log(seconds) and of log(peak_mem_mb) against log(L) over the measured (``status == "ok"``) rows with L in the fit
range; with fewer than two lengths in the range, over all measured lengths (marked ``fallback``, ``*`` in tables).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

#: what the numbers of every report mean (written into the JSON and the markdown)
CONVENTIONS = {
    "seconds": "median over the timed repeats after the warm-up (tables and fits use it); seconds_min: their minimum",
    "peak_mem_mb": "peak extra memory of the measured work, MiB (CPU: peak RSS minus RSS before; CUDA: peak "
                   "allocated minus allocated before)",
    "process_peak_rss_mb": "peak resident size of the point's process over its whole life (VmHWM), MiB",
    "exponents": "least-squares slope of log(y) against log(L) over the fit range",
}
#: (header, row key, format spec or callable value -> text); missing values print as "-"
Column = tuple[str, str, str | Callable[[Any], str]]
QUANTITIES = (("time", "seconds"), ("memory", "peak_mem_mb"))


def fit_exponent(ls: Sequence[float], ys: Sequence[float | None]) -> float | None:
    """Least-squares slope of log y against log L over the points with y > 0 (``None`` with fewer than two
    distinct lengths)."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(ls, ys, strict=True) if y is not None and y > 0 and x > 0]
    if len({p[0] for p in pts}) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx


def extrapolate(points: Sequence[tuple[int, float]], length: int, exponent: float = 2.0) -> float | None:
    """``y(length)`` from the longest measured point shorter than ``length``, scaled as ``L**exponent`` (``None``
    when there is none). Used to skip a quadratic path predicted past a memory cap."""
    shorter = [(x, y) for x, y in points if x < length and y is not None]
    if not shorter:
        return None
    x0, y0 = max(shorter)
    return y0 * (length / x0) ** exponent


def _groups(rows: Sequence[Mapping[str, Any]], group_by: Sequence[str]) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    for r in rows:
        g = {k: r.get(k) for k in group_by}
        if g not in seen:
            seen.append(g)
    return seen


def series(rows: Sequence[Mapping[str, Any]], group: Mapping[str, Any], key: str,
           fit_range: tuple[float | None, float | None] = (None, None)) -> tuple[list[int], list[float]]:
    """Sorted (lengths, values) of the measured rows of ``group`` with a positive ``key`` and L in ``fit_range``."""
    lo, hi = fit_range
    pts = sorted((r["L"], r[key]) for r in rows
                 if r.get("status", "ok") == "ok" and all(r.get(k) == v for k, v in group.items())
                 and r.get(key) is not None and r[key] > 0
                 and (lo is None or r["L"] >= lo) and (hi is None or r["L"] <= hi))
    return [p[0] for p in pts], [p[1] for p in pts]


def fit_exponents(rows: Sequence[Mapping[str, Any]], group_by: Sequence[str],
                  fit_range: tuple[float | None, float | None] = (None, None)) -> list[dict[str, Any]]:
    """Time and memory exponents of every group (see the module docstring).

    Returns:
        one dict per group with at least two measured lengths: ``{"group": {...}, "time": e | None,
        "memory": e | None, "lengths": [L used], "fallback": bool}``.
    """
    out = []
    for group in _groups(rows, group_by):
        entry: dict[str, Any] = {"group": group, "fallback": False, "lengths": []}
        for name, key in QUANTITIES:
            ls, ys = series(rows, group, key, fit_range)
            if len(set(ls)) < 2:
                all_ls, all_ys = series(rows, group, key)
                if len(set(all_ls)) >= 2:
                    ls, ys, entry["fallback"] = all_ls, all_ys, True
            entry[name] = fit_exponent(ls, ys)
            if entry[name] is not None and len(ls) > len(entry["lengths"]):
                entry["lengths"] = ls
        if entry["time"] is not None or entry["memory"] is not None:
            out.append(entry)
    return out


def group_label(group: Mapping[str, Any]) -> str:
    """``"flash fwd_bwd"`` for ``{"impl": "flash", "mode": "fwd_bwd"}``, ``"batch=8"`` for ``{"batch": 8}``."""
    return " ".join(v if isinstance(v, str) else f"{k}={v}" for k, v in group.items()) or "all"


def _fmt(value: Any, spec: str | Callable[[Any], str]) -> str:
    if value is None or value == "":
        return "-"
    if callable(spec):
        return spec(value)
    return format(value, spec) if spec else str(value)


def _range_text(fit_range: tuple[float | None, float | None]) -> str:
    lo, hi = fit_range
    if lo is None and hi is None:
        return "all measured L"
    return f"{lo or 0:g} <= L" + (f" <= {hi:g}" if hi is not None else "")


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[Column]) -> str:
    """A markdown table of ``rows`` with the given columns (numbers right-aligned)."""
    lines = ["| " + " | ".join(c[0] for c in columns) + " |",
             "|" + "|".join("---:" if c[2] else "---" for c in columns) + "|"]
    lines += ["| " + " | ".join(_fmt(r.get(key), spec) for _, key, spec in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def exponent_table(exps: Sequence[Mapping[str, Any]], fit_range: tuple[float | None, float | None]) -> str:
    """The exponents as a markdown table, with what they were fitted over ("" without any)."""
    if not exps:
        return ""
    head = (f"Scaling exponents (log-log least squares over {_range_text(fit_range)}; * = fewer than two lengths "
            "in that range, fitted over all measured lengths):")
    lines = [head, "",
             "| group | time exponent | memory exponent | lengths |", "|---|---:|---:|---|"]
    for e in exps:
        star = "*" if e["fallback"] else ""
        t = "-" if e["time"] is None else f"{e['time']:.2f}{star}"
        m = "-" if e["memory"] is None else f"{e['memory']:.2f}{star}"
        lines.append(f"| {group_label(e['group'])} | {t} | {m} | {', '.join(map(str, e['lengths']))} |")
    return "\n".join(lines) + "\n"


def plot_scaling(rows: Sequence[Mapping[str, Any]], exps: Sequence[Mapping[str, Any]], group_by: Sequence[str],
                 path: Path, title: str) -> None:
    """Log-log plot of seconds (median) and peak memory against L, one line per group, exponents in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for ax, (name, key), ylabel in zip(axes, QUANTITIES, ("seconds (median)", "peak extra memory (MiB)"),
                                       strict=True):
        drawn = False
        for group in _groups(rows, group_by):
            ls, ys = series(rows, group, key)
            if not ls:
                continue
            e = next((e for e in exps if e["group"] == group), None)
            slope = "" if e is None or e[name] is None else f" (L^{e[name]:.2f}{'*' if e['fallback'] else ''})"
            ax.plot(ls, ys, marker="o", label=group_label(group) + slope)
            drawn = True
        if drawn:
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.legend(fontsize=8)
        ax.set(xlabel="chain length L", ylabel=ylabel, title=name)
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def print_summary(title: str, rows: Sequence[Mapping[str, Any]], columns: Sequence[Column],
                  exps: Sequence[Mapping[str, Any]], files: Sequence[Path] = ()) -> None:
    """The rows as a table, the exponents and the files written, on the terminal (rich)."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=title)
    for header, _, spec in columns:
        table.add_column(header, justify="right" if spec else "left")
    for r in rows:
        table.add_row(*(_fmt(r.get(key), spec) for _, key, spec in columns))
    console.print(table)
    for e in exps:
        t = "-" if e["time"] is None else f"{e['time']:.2f}"
        m = "-" if e["memory"] is None else f"{e['memory']:.2f}"
        star = " (fallback: all measured L)" if e["fallback"] else ""
        console.print(f"{group_label(e['group'])}: time exponent {t}, memory exponent {m} "
                      f"over L = {', '.join(map(str, e['lengths']))}{star}",
                      markup=False, highlight=False, soft_wrap=True)
    if files:
        console.print("wrote " + ", ".join(map(str, files)), markup=False, highlight=False, soft_wrap=True)


def save_json(out: Path, benchmark: str, meta: Mapping[str, Any], rows: Sequence[Mapping[str, Any]],
              exps: Sequence[Mapping[str, Any]] = (), fit_range: tuple[float | None, float | None] = (None, None),
              ) -> dict[str, Any]:
    """Write (and return) the JSON document: ``{"benchmark", "meta", "conventions", "fit_range", "exponents",
    "rows"}``. Called after every point with the rows so far, and once at the end."""
    doc = {"benchmark": benchmark, "meta": dict(meta), "conventions": CONVENTIONS, "fit_range": list(fit_range),
           "exponents": list(exps), "rows": list(rows)}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    return doc


def write_report(out: Path, *, benchmark: str, title: str, meta: Mapping[str, Any],
                 rows: Sequence[Mapping[str, Any]], columns: Sequence[Column], group_by: Sequence[str],
                 fit_range: tuple[float | None, float | None] = (None, None), extra_markdown: str = "",
                 summary: bool = True) -> dict[str, Any]:
    """Fit the exponents and write ``out`` (JSON), ``out.md`` and ``out.png``; print the summary.

    Args:
        out: the JSON path; the markdown and the plot go beside it with the suffixes ``.md`` and ``.png``.
        benchmark: short name (``"ipa"``, ``"train"``, ``"sample"``).
        title: heading of the markdown, the plot and the printed table.
        meta: settings of the run (device, threads, dims, ...), one line of the markdown.
        rows: one per point (:func:`flowbb.bench.harness.run_points`).
        columns: the table's columns.
        group_by: row keys that make one line of the plot and one exponent fit (L excluded).
        fit_range: (lo, hi) of L for the fits; ``None`` ends are open.
        extra_markdown: appended to the markdown (e.g. ratios between groups).
        summary: print the summary.

    Returns:
        the JSON document.
    """
    exps = fit_exponents(rows, group_by, fit_range)
    doc = save_json(out, benchmark, meta, rows, exps, fit_range)
    md, png = out.with_suffix(".md"), out.with_suffix(".png")
    text = [f"# {title}", "", ", ".join(f"{k}: {v}" for k, v in meta.items()), "",
            "Seconds: " + CONVENTIONS["seconds"] + ". Memory: " + CONVENTIONS["peak_mem_mb"] + ".", "",
            markdown_table(rows, columns), exponent_table(exps, fit_range)]
    if extra_markdown:
        text += [extra_markdown]
    md.write_text("\n".join(text))
    plot_scaling(rows, exps, group_by, png, title)
    if summary:
        print_summary(title, rows, columns, exps, (out, md, png))
    return doc
