"""IPA benchmark: FlashIPA (+ factorized kNN edge embedder) vs reference IPA (+ dense edge embedder) vs
the bare fused-attention floor, over chain length.

    python scripts/bench_ipa.py --lengths 256 1024 4096 --out bench_results/ipa.json [--device cpu|cuda]

Every measurement (impl, L, mode) runs in a fresh subprocess: batch 1, the FlashIPA paper's sizes
(c_s 256, c_z 128, c_hidden 128, 8 heads, 8 qk / 12 v points, rank 2, kNN k 10), float32.

* ``flash``: FactorizedEdgeEmbedder (kNN distograms of x_t and of a self-conditioning prediction) + FlashIPA.
* ``ipa``: DenseEdgeEmbedder + reference IPA. Skipped (row with a ``note``) when its predicted peak memory
  (quadratic extrapolation of its last measured length, else an analytic estimate) exceeds ``--mem-cap-gb``.
* ``sdpa``: one ``scaled_dot_product_attention`` call on random q/k/v of FlashIPA's lifted (padded) head
  width and head count, no mask: the kernel floor.

Modes: ``fwd`` (inference, under ``torch.no_grad``) and ``fwd_bwd`` (forward + ``backward`` of a scalar,
parameter gradients included). Seconds: median over ``--repeats`` runs after one warm-up run. Peak extra
memory, measured in a separate run after the timed ones: on CPU, the peak resident set size (VmHWM, reset
through ``/proc/self/clear_refs``) minus the resident size just before the run, with glibc's mmap threshold
pinned (``mallopt``) and the heap trimmed first, so freed buffers cannot hide allocations; on CUDA,
``torch.cuda.max_memory_allocated`` minus the allocated bytes before the run. Inputs and parameters exist
before the run and are not counted.

On CPU the workers enable flush-to-zero for denormals (``torch.set_flush_denormal``, disable with
``--no-flush-denormal``): attention probabilities far down the softmax tail are otherwise denormal floats,
which slow CPU arithmetic by an order of magnitude without changing the result.

Writes FILE.json (a list of rows ``{"impl", "L", "mode", "seconds", "peak_mem_mb"}`` plus ``note`` for
skipped/failed ones), FILE.md (table, fitted exponents, target checks) and FILE.png (log-log plot with fitted
scaling exponents over L >= 1024).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from flowbb.memory import reset_peak_rss, rss_bytes

IMPLS = ("flash", "ipa", "sdpa")
MODES = ("fwd", "fwd_bwd")
PAPER_DIMS = {
    "c_s": 256,
    "c_z": 128,
    "c_hidden": 128,
    "no_heads": 8,
    "no_qk_points": 8,
    "no_v_points": 12,
    "z_factor_rank": 2,
    "k": 10,
}
FIT_MIN_L = 1024


# ------------------------------------------------------------------------------------------------
# worker: one measurement in a fresh process
# ------------------------------------------------------------------------------------------------


def _pin_malloc() -> None:
    """Fix glibc's mmap threshold (large blocks are mmapped and returned on free) and trim the heap."""
    import ctypes

    libc = ctypes.CDLL("libc.so.6")
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 64 * 1024)
    libc.mallopt(m_trim_threshold, 128 * 1024)
    libc.malloc_trim(0)


def _build(impl: str, L: int, device: str, seed: int = 0):
    """Returns (fn(grad: bool) -> scalar-or-tensor, params list, inputs requiring grad)."""
    import torch

    from flowbb.model.attention import common_width
    from flowbb.model.edge_embed import DenseEdgeEmbedder, FactorizedEdgeEmbedder
    from flowbb.model.flash_ipa import FlashIPA
    from flowbb.model.ipa import InvariantPointAttention

    d = PAPER_DIMS
    g = torch.Generator().manual_seed(seed)
    ipa_dims = {k: d[k] for k in ("c_s", "c_z", "c_hidden", "no_heads", "no_qk_points", "no_v_points")}
    if impl == "sdpa":
        flash = FlashIPA(**ipa_dims, z_factor_rank=d["z_factor_rank"])
        dqk, dv = flash.lifted_widths()
        probe = torch.empty(0, device=device)
        width = common_width(probe, dqk, dv)
        shape = (1, d["no_heads"], L, width)
        q, k, v = (torch.randn(shape, generator=g) for _ in range(3))
        q, k = q / width**0.25, k / width**0.25  # logits ~ N(0, 1)
        q, k, v = (x.to(device).requires_grad_(True) for x in (q, k, v))

        def fn_sdpa():
            return torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=1.0)

        return fn_sdpa, [], [q, k, v]

    s = torch.randn(1, L, d["c_s"], generator=g)
    steps = torch.randn(1, L, 3, generator=g)
    trans = torch.cumsum(3.8 * steps / steps.norm(dim=-1, keepdim=True), dim=1)
    trans = trans - trans.mean(dim=1, keepdim=True)
    sc_trans = trans + torch.randn(1, L, 3, generator=g)
    a = torch.randn(1, L, 3, 3, generator=g)
    rots, _ = torch.linalg.qr(a)
    rots = rots * torch.linalg.det(rots)[..., None, None]  # proper rotations
    residue_index = torch.arange(L)[None]
    mask = torch.ones(1, L)
    s, trans, sc_trans, rots, residue_index, mask = (
        x.to(device) for x in (s, trans, sc_trans, rots, residue_index, mask)
    )
    s.requires_grad_(True)
    if impl == "flash":
        emb = FactorizedEdgeEmbedder(d["c_s"], d["c_z"], rank=d["z_factor_rank"], k=d["k"])
        ipa = FlashIPA(**ipa_dims, z_factor_rank=d["z_factor_rank"], zero_init=False)
    elif impl == "ipa":
        emb = DenseEdgeEmbedder(d["c_s"], d["c_z"])
        ipa = InvariantPointAttention(**ipa_dims, zero_init=False)
    else:
        raise ValueError(f"unknown impl {impl!r}")
    emb, ipa = emb.to(device), ipa.to(device)

    def fn_model():
        z = emb(s, trans, sc_trans, residue_index, mask)
        z = (z,) if impl == "ipa" else z
        return ipa(s, *z, rots, trans * 0.1, mask)

    return fn_model, list(emb.parameters()) + list(ipa.parameters()), [s]


def worker(spec: dict) -> dict:
    """Run one (impl, L, mode) measurement; returns the row."""
    import torch

    device, mode, L = spec["device"], spec["mode"], int(spec["L"])
    torch.manual_seed(0)
    if device == "cpu":
        if spec["flush_denormal"]:  # before the thread pool exists, so that its threads inherit the FP mode
            torch.set_flush_denormal(True)
        torch.set_num_threads(int(spec["threads"]))
    fn, params, inputs = _build(spec["impl"], L, device)
    leaves = params + inputs

    def run():
        for x in leaves:
            x.grad = None
        if mode == "fwd":
            with torch.no_grad():
                out = fn()
            del out
        else:
            fn().sum().backward()
        if device == "cuda":
            torch.cuda.synchronize()

    run()  # warm-up
    times = []
    for _ in range(int(spec["repeats"])):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    for x in leaves:
        x.grad = None
    import gc

    gc.collect()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        run()
        peak = torch.cuda.max_memory_allocated() - base
    else:
        _pin_malloc()
        base = rss_bytes("VmRSS")
        if not reset_peak_rss():
            raise RuntimeError("cannot reset the peak RSS (/proc/self/clear_refs)")
        run()
        peak = rss_bytes("VmHWM") - base
    return {
        "impl": spec["impl"],
        "L": L,
        "mode": mode,
        "seconds": statistics.median(times),
        "peak_mem_mb": peak / 2**20,
        "times": times,
    }


# ------------------------------------------------------------------------------------------------
# driver
# ------------------------------------------------------------------------------------------------


def predicted_ipa_mb(L: int, mode: str, measured: dict[tuple[int, str], float]) -> float:
    """Predicted peak extra memory (MB) of the dense path: quadratic extrapolation from the largest
    measured length of this mode, else an analytic estimate (float32 [L, L, c] activations kept alive)."""
    prev = [(l_, mb) for (l_, m), mb in measured.items() if m == mode and l_ < L]
    if prev:
        l0, mb0 = max(prev)
        return mb0 * (L / l0) ** 2
    # forward peak ~ embedder input + hidden layers (~600 floats per pair); backward keeps ~4x that.
    floats_per_pair = 600 if mode == "fwd" else 2400
    return L * L * floats_per_pair * 4 / 2**20


def fit_exponent(ls: list[int], ys: list[float]) -> float | None:
    """Least-squares slope of log y against log L (None with fewer than 2 positive points)."""
    pts = [(math.log(l_), math.log(y)) for l_, y in zip(ls, ys, strict=True) if y and y > 0]
    if len(pts) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx if sxx > 0 else None


def _series(
    rows: list[dict], impl: str, mode: str, key: str, min_l: int = 0
) -> tuple[list[int], list[float]]:
    sel = sorted(
        (r["L"], r[key]) for r in rows if r["impl"] == impl and r["mode"] == mode and r.get(key) is not None
    )
    sel = [(l_, y) for l_, y in sel if l_ >= min_l]
    return [p[0] for p in sel], [p[1] for p in sel]


def fitted(rows: list[dict], impl: str, mode: str, key: str) -> tuple[float | None, list[int], bool]:
    """Exponent over L >= FIT_MIN_L; with fewer than two such points, over all measured lengths
    (flagged True). Returns (exponent, lengths used, fallback)."""
    ls, ys = _series(rows, impl, mode, key, FIT_MIN_L)
    if len(ls) >= 2:
        return fit_exponent(ls, ys), ls, False
    ls, ys = _series(rows, impl, mode, key)
    return fit_exponent(ls, ys), ls, True


def _lookup(rows: list[dict], impl: str, mode: str, L: int, key: str) -> float | None:
    for r in rows:
        if r["impl"] == impl and r["mode"] == mode and r["L"] == L:
            return r.get(key)
    return None


def target_checks(rows: list[dict]) -> list[tuple[str, str, str]]:
    """The issue's targets that the rows allow to evaluate: (name, PASS/FAIL, numbers)."""
    out = []
    mem = _lookup(rows, "flash", "fwd_bwd", 8192, "peak_mem_mb")
    if mem is not None:
        out.append(
            ("flash fwd+bwd peak extra memory at L=8192 <= 1.5 GB", _pf(mem <= 1536), f"{mem / 1024:.3f} GB")
        )
    ls, ys = _series(rows, "flash", "fwd_bwd", "peak_mem_mb", FIT_MIN_L)
    if ls and min(ls) <= 1024 and max(ls) >= 8192:
        e = fit_exponent(ls, ys)
        if e is not None:
            out.append(("flash fwd+bwd memory exponent over 1024..8192 <= 1.15", _pf(e <= 1.15), f"{e:.3f}"))
    tf = _lookup(rows, "flash", "fwd_bwd", 4096, "seconds")
    ts = _lookup(rows, "sdpa", "fwd_bwd", 4096, "seconds")
    if tf is not None and ts is not None:
        out.append(
            (
                "flash fwd+bwd time <= 1.5x sdpa floor at L=4096",
                _pf(tf <= 1.5 * ts),
                f"{tf:.2f} s vs {ts:.2f} s ({tf / ts:.2f}x)",
            )
        )
    for L, mode in ((1024, "fwd_bwd"), (2048, "fwd")):
        mf = _lookup(rows, "flash", mode, L, "peak_mem_mb")
        mi = _lookup(rows, "ipa", mode, L, "peak_mem_mb")
        if mf is not None and mi is not None:
            out.append(
                (
                    f"flash >= 20x less peak memory than ipa at L={L} ({mode})",
                    _pf(mi >= 20 * mf),
                    f"{mf:.0f} MB vs {mi:.0f} MB ({mi / mf:.1f}x)",
                )
            )
    return out


def _pf(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def write_markdown(rows: list[dict], path: Path, meta: dict) -> None:
    lines = [
        "# IPA benchmark",
        "",
        ", ".join(f"{k}: {v}" for k, v in meta.items()),
        "",
        "| impl | mode | L | seconds | peak extra MB | note |",
        "|---|---|---:|---:|---:|---|",
    ]
    for r in sorted(rows, key=lambda r: (IMPLS.index(r["impl"]), MODES.index(r["mode"]), r["L"])):
        sec = f"{r['seconds']:.4f}" if r.get("seconds") is not None else "-"
        mb = f"{r['peak_mem_mb']:.1f}" if r.get("peak_mem_mb") is not None else "-"
        lines.append(f"| {r['impl']} | {r['mode']} | {r['L']} | {sec} | {mb} | {r.get('note', '')} |")
    lines += [
        "",
        (
            f"Fitted scaling exponents (log-log least squares over L >= {FIT_MIN_L}; * = fewer than two such "
            "lengths measured, fitted over all measured lengths):"
        ),
        "",
    ]
    lines += ["| impl | mode | time exponent | memory exponent | lengths |", "|---|---|---:|---:|---|"]
    for impl in IMPLS:
        for mode in MODES:
            et, ls, fb = fitted(rows, impl, mode, "seconds")
            em, _, _ = fitted(rows, impl, mode, "peak_mem_mb")
            if et is None and em is None:
                continue
            star = "*" if fb else ""
            ft = "-" if et is None else f"{et:.2f}{star}"
            fm = "-" if em is None else f"{em:.2f}{star}"
            lines.append(f"| {impl} | {mode} | {ft} | {fm} | {', '.join(map(str, ls))} |")
    checks = target_checks(rows)
    if checks:
        lines += ["", "Targets:", "", "| target | result | numbers |", "|---|---|---|"]
        lines += [f"| {n} | {r} | {x} |" for n, r, x in checks]
    path.write_text("\n".join(lines) + "\n")


def write_plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    colors = {"flash": "tab:green", "ipa": "tab:red", "sdpa": "tab:blue"}
    styles = {"fwd": "--", "fwd_bwd": "-"}
    for ax, key, label in (
        (axes[0], "seconds", "wall time (s)"),
        (axes[1], "peak_mem_mb", "peak extra memory (MB)"),
    ):
        for impl in IMPLS:
            for mode in MODES:
                ls, ys = _series(rows, impl, mode, key)
                if not ls:
                    continue
                e, _, fb = fitted(rows, impl, mode, key)
                tag = f"{impl} {mode}" + (f" (L^{e:.2f}{'*' if fb else ''})" if e is not None else "")
                ax.plot(ls, ys, styles[mode], marker="o", color=colors[impl], label=tag)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("chain length L")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lengths", type=int, nargs="+", default=[256, 1024, 4096])
    p.add_argument("--out", type=Path, required=True, help="results JSON (FILE.md and FILE.png beside it)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--mem-cap-gb", type=float, default=16.0, help="skip ipa runs predicted above this")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads per worker")
    p.add_argument("--impls", nargs="+", choices=IMPLS, default=list(IMPLS))
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per measurement")
    p.add_argument("--no-flush-denormal", dest="flush_denormal", action="store_false")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker:
        print("RESULT " + json.dumps(worker(json.loads(args.worker))), flush=True)
        return 0

    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    console = Console()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            console.print("[red]--device cuda but CUDA is not available[/red]")
            return 2
    jobs = [(impl, L, mode) for L in sorted(args.lengths) for impl in args.impls for mode in args.modes]
    rows: list[dict] = []
    ipa_measured: dict[tuple[int, str], float] = {}
    cap_mb = args.mem_cap_gb * 1024
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("bench", total=len(jobs))
        for impl, L, mode in jobs:
            progress.update(task, description=f"{impl:5s} L={L:<5d} {mode:7s}")
            row = {"impl": impl, "L": L, "mode": mode, "seconds": None, "peak_mem_mb": None}
            pred = predicted_ipa_mb(L, mode, ipa_measured) if impl == "ipa" else 0.0
            if impl == "ipa" and pred > cap_mb:
                row["note"] = f"skipped: predicted {pred / 1024:.1f} GB > cap {args.mem_cap_gb:g} GB"
            else:
                spec = {
                    "impl": impl,
                    "L": L,
                    "mode": mode,
                    "device": args.device,
                    "repeats": args.repeats,
                    "threads": args.threads,
                    "flush_denormal": args.flush_denormal,
                }
                cmd = [
                    sys.executable,
                    str(Path(__file__).resolve()),
                    "--out",
                    str(args.out),
                    "--worker",
                    json.dumps(spec),
                ]
                t0 = time.time()
                try:
                    proc = subprocess.run(
                        cmd, check=False, capture_output=True, text=True, timeout=args.timeout, env=env
                    )
                    res = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
                    if proc.returncode == 0 and res:
                        row.update(json.loads(res[-1][len("RESULT ") :]))
                    else:
                        err = (proc.stderr.strip().splitlines() or ["?"])[-1]
                        row["note"] = f"failed (rc {proc.returncode}): {err[:200]}"
                except subprocess.TimeoutExpired:
                    row["note"] = f"timeout after {args.timeout:.0f} s"
                if impl == "ipa" and row.get("peak_mem_mb") is not None:
                    ipa_measured[(L, mode)] = row["peak_mem_mb"]
                if row.get("seconds") is not None:
                    progress.console.print(
                        f"{impl:5s} L={L:<5d} {mode:7s} {row['seconds']:9.4f} s  {row['peak_mem_mb']:9.1f} MB"
                        f"  ({time.time() - t0:.0f} s wall)"
                    )
                else:
                    progress.console.print(f"{impl:5s} L={L:<5d} {mode:7s} {row.get('note')}")
            rows.append(row)
            args.out.write_text(json.dumps(rows, indent=1))  # keep partial results
            progress.advance(task)

    meta = {
        "device": args.device,
        "threads": args.threads if args.device == "cpu" else "-",
        "repeats": args.repeats,
        "dtype": "float32",
        "batch": 1,
        "dims": " ".join(f"{k}={v}" for k, v in PAPER_DIMS.items()),
        "flush_denormal": args.flush_denormal,
    }
    args.out.write_text(json.dumps(rows, indent=1))
    md, png = args.out.with_suffix(".md"), args.out.with_suffix(".png")
    write_markdown(rows, md, meta)
    write_plot(rows, png, f"IPA benchmark ({args.device}, batch 1, float32)")

    table = Table(title="IPA benchmark summary")
    for col in ("impl", "mode", "L", "seconds", "peak extra MB", "note"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["impl"],
            r["mode"],
            str(r["L"]),
            "-" if r.get("seconds") is None else f"{r['seconds']:.4f}",
            "-" if r.get("peak_mem_mb") is None else f"{r['peak_mem_mb']:.1f}",
            r.get("note", ""),
        )
    console.print(table)
    for name, res, nums in target_checks(rows):
        console.print(f"[{'green' if res == 'PASS' else 'red'}]{res}[/] {name}: {nums}")
    console.print(f"wrote {args.out}, {md}, {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
