"""IPA benchmark: FlashIPA (+ factorized kNN edge embedder) vs reference IPA (+ dense edge embedder) vs
the bare fused-attention floor, over chain length.

    python scripts/bench_ipa.py --lengths 256 1024 4096 --out bench_results/ipa.json [--device cpu|cuda]

Every measurement (impl, L, mode) is one point of the shared harness (:mod:`flowbb.bench`): a fresh process,
batch 1, the FlashIPA paper's sizes (c_s 256, c_z 128, c_hidden 128, 8 heads, 8 qk / 12 v points, rank 2, kNN k 10),
float32, :class:`~flowbb.model.flash_ipa.FlashIPA`'s default (exact) lifting.

* ``flash``: FactorizedEdgeEmbedder (kNN distograms of x_t and of a self-conditioning prediction) + FlashIPA.
* ``ipa``: DenseEdgeEmbedder + reference IPA. Skipped (row with a ``note``) when its predicted peak memory
  (quadratic extrapolation of its last measured length, else an analytic estimate) exceeds ``--mem-cap-gb``.
* ``sdpa``: one ``scaled_dot_product_attention`` call on random q/k/v of FlashIPA's lifted (padded) head
  width and head count, no mask: the kernel floor.

Modes: ``fwd`` (inference, under ``torch.no_grad``) and ``fwd_bwd`` (forward + ``backward`` of a scalar,
parameter gradients included). Seconds: median (and minimum) over ``--repeats`` runs after one warm-up run. Peak
extra memory: the harness's ``after`` protocol (one more run after the timed ones; CPU: peak RSS minus RSS before,
glibc's mmap threshold pinned and the heap trimmed first; CUDA: peak allocated minus allocated before). Inputs and
parameters exist before the run and are not counted. On CPU the points flush denormals to zero
(``--no-flush-denormal`` to keep them): far softmax tails are otherwise denormal floats, an order of magnitude
slower without changing the result.

Writes FILE.json (``{"benchmark", "meta", "conventions", "fit_range", "exponents", "rows"}``; rows
``{"impl", "L", "mode", "status", "note", "seconds", "seconds_min", "times", "peak_mem_mb", ...}``), FILE.md
(tables, fitted exponents, flash/sdpa time and ipa/flash memory ratios) and FILE.png (log-log plot). Targets for
these numbers live in the README and the issues, not here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from flowbb.bench.harness import Point, run_points
from flowbb.bench.report import Column, extrapolate, save_json, write_report

IMPLS = ("flash", "ipa", "sdpa")
MODES = ("fwd", "fwd_bwd")
PAPER_DIMS = {"c_s": 256, "c_z": 128, "c_hidden": 128, "no_heads": 8, "no_qk_points": 8, "no_v_points": 12,
              "z_factor_rank": 2, "k": 10}
#: FlashIPA's pair lifting: "preset" is model=flash's (compact, 40 pair channels per rank, 8-frequency sequence-offset
#: bias, sequence-neighbour distograms: heads 249/244 wide); "exact" is the oracle lifting (409/420 wide)
LIFTINGS = {"preset": {"pair_channels": 40, "seq_offset_freqs": 8, "seq_neighbors": 2},
            "exact": {"pair_channels": None, "seq_offset_freqs": 0, "seq_neighbors": 0}}
FIT_MIN_L = 1024
COLUMNS: list[Column] = [("impl", "impl", ""), ("mode", "mode", ""), ("L", "L", "d"), ("seconds", "seconds", ".4f"),
                         ("min s", "seconds_min", ".4f"), ("peak extra MB", "peak_mem_mb", ".1f"),
                         ("status", "status", ""), ("note", "note", "")]


# ------------------------------------------------------------------------------------------------
# one point (runs in its own process)
# ------------------------------------------------------------------------------------------------


def _build(impl: str, L: int, device: str, seed: int = 0, lifting: str = "preset"):
    """Returns (fn() -> tensor, params list, inputs requiring grad)."""
    import torch

    from flowbb.model.attention import common_width
    from flowbb.model.edge_embed import DenseEdgeEmbedder, FactorizedEdgeEmbedder
    from flowbb.model.flash_ipa import FlashIPA
    from flowbb.model.ipa import InvariantPointAttention

    d = PAPER_DIMS
    g = torch.Generator().manual_seed(seed)
    ipa_dims = {k: d[k] for k in ("c_s", "c_z", "c_hidden", "no_heads", "no_qk_points", "no_v_points")}
    lift = LIFTINGS[lifting]
    flash_dims = dict(ipa_dims, z_factor_rank=d["z_factor_rank"], pair_channels=lift["pair_channels"],
                      seq_offset_freqs=lift["seq_offset_freqs"])
    if impl == "sdpa":  # the floor: one fused attention at the flash lifting's width
        dqk, dv = FlashIPA(**flash_dims).lifted_widths()
        width = common_width(torch.empty(0, device=device), dqk, dv)
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
    rots, _ = torch.linalg.qr(torch.randn(1, L, 3, 3, generator=g))
    rots = rots * torch.linalg.det(rots)[..., None, None]  # proper rotations
    residue_index = torch.arange(L)[None]
    mask = torch.ones(1, L)
    s, trans, sc_trans, rots, residue_index, mask = (
        x.to(device) for x in (s, trans, sc_trans, rots, residue_index, mask))
    s.requires_grad_(True)
    if impl == "flash":
        emb = FactorizedEdgeEmbedder(d["c_s"], d["c_z"], rank=d["z_factor_rank"], k=d["k"],
                                     seq_neighbors=lift["seq_neighbors"])
        ipa = FlashIPA(**flash_dims, zero_init=False)
    elif impl == "ipa":
        emb = DenseEdgeEmbedder(d["c_s"], d["c_z"])
        ipa = InvariantPointAttention(**ipa_dims, zero_init=False)
    else:
        raise ValueError(f"unknown impl {impl!r}")
    emb, ipa = emb.to(device), ipa.to(device)

    def fn_model():
        z = emb(s, trans, sc_trans, residue_index, mask)
        if impl == "ipa":
            return ipa(s, z, rots, trans * 0.1, mask)
        return ipa(s, *z, rots, trans * 0.1, mask, positions=residue_index)

    return fn_model, list(emb.parameters()) + list(ipa.parameters()), [s]


def point(impl: str, L: int, mode: str, device: str = "cpu", repeats: int = 3, threads: int = 2,
          flush_denormal: bool = True, lifting: str = "preset") -> dict[str, Any]:
    """One (impl, L, mode) measurement in this process: :func:`flowbb.bench.measure.measure`'s dict."""
    import torch

    from flowbb.bench.measure import measure, setup_torch

    setup_torch(device, threads, flush_denormal)
    torch.manual_seed(0)
    fn, params, inputs = _build(impl, L, device, lifting=lifting)
    leaves = params + inputs

    def release() -> None:
        for x in leaves:
            x.grad = None

    def run() -> None:
        release()
        if mode == "fwd":
            with torch.no_grad():
                fn()
        else:
            fn().sum().backward()

    return measure(run, device, repeats=repeats, warmup=1, memory="after", release=release)


# ------------------------------------------------------------------------------------------------
# sweep and report
# ------------------------------------------------------------------------------------------------


def predicted_ipa_mb(L: int, mode: str, rows: list[dict]) -> float:
    """Predicted peak extra memory (MB) of the dense path: quadratic extrapolation from the longest measured
    length of this mode, else an analytic estimate (float32 [L, L, c] activations kept alive)."""
    measured = [(r["L"], r["peak_mem_mb"]) for r in rows
                if r["impl"] == "ipa" and r["mode"] == mode and r.get("peak_mem_mb") is not None]
    pred = extrapolate(measured, L, 2.0)
    if pred is not None:
        return pred
    floats_per_pair = 600 if mode == "fwd" else 2400  # forward ~600 floats per pair alive; backward ~4x
    return L * L * floats_per_pair * 4 / 2**20


def ratios_markdown(rows: list[dict]) -> str:
    """Per (L, mode): flash time over the sdpa floor, and ipa peak memory over flash's (where both are measured)."""
    def get(impl: str, mode: str, L: int, key: str) -> float | None:
        return next((r.get(key) for r in rows if (r["impl"], r["mode"], r["L"]) == (impl, mode, L)), None)

    lines = ["| mode | L | flash s / sdpa s | ipa MB / flash MB |", "|---|---:|---:|---:|"]
    for mode in MODES:
        for L in sorted({r["L"] for r in rows}):
            tf, ts = get("flash", mode, L, "seconds"), get("sdpa", mode, L, "seconds")
            mf, mi = get("flash", mode, L, "peak_mem_mb"), get("ipa", mode, L, "peak_mem_mb")
            t = f"{tf / ts:.2f}x" if tf and ts else "-"
            m = f"{mi / mf:.1f}x" if mi and mf else "-"
            if t != "-" or m != "-":
                lines.append(f"| {mode} | {L} | {t} | {m} |")
    return "Ratios:\n\n" + "\n".join(lines) + "\n" if len(lines) > 2 else ""


def main(argv: list[str] | None = None) -> int:
    """Parse the flags, run the sweep, write the report; 0 on success, 2 without CUDA for ``--device cuda``."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lengths", type=int, nargs="+", default=[256, 1024, 4096])
    p.add_argument("--out", type=Path, required=True, help="results JSON (FILE.md and FILE.png beside it)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--repeats", type=int, default=3, help="timed runs after one warm-up (median reported)")
    p.add_argument("--mem-cap-gb", type=float, default=16.0, help="skip ipa runs predicted above this")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads per point")
    p.add_argument("--impls", nargs="+", choices=IMPLS, default=list(IMPLS))
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per measurement")
    p.add_argument("--fit-range", type=int, nargs=2, default=None, metavar=("LO", "HI"),
                   help=f"L range of the exponent fits (default: L >= {FIT_MIN_L})")
    p.add_argument("--no-flush-denormal", dest="flush_denormal", action="store_false")
    p.add_argument("--lifting", choices=sorted(LIFTINGS), default="preset",
                   help="FlashIPA's pair lifting: preset = model=flash's compact one (default), exact = the oracle")
    args = p.parse_args(argv)

    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            print("--device cuda but CUDA is not available", file=sys.stderr)
            return 2
    fit_range = tuple(args.fit_range) if args.fit_range else (FIT_MIN_L, None)
    meta = {"device": args.device, "threads": args.threads if args.device == "cpu" else "-",
            "repeats": args.repeats, "dtype": "float32", "batch": 1,
            "dims": " ".join(f"{k}={v}" for k, v in PAPER_DIMS.items()), "flush_denormal": args.flush_denormal, "lifting": args.lifting}
    points = [Point({"impl": impl, "L": L, "mode": mode}, point,
                    {"impl": impl, "L": L, "mode": mode, "device": args.device, "repeats": args.repeats,
                     "threads": args.threads, "flush_denormal": args.flush_denormal, "lifting": args.lifting})
              for L in sorted(args.lengths) for impl in args.impls for mode in args.modes]
    cap_mb = args.mem_cap_gb * 1024

    def skip(pt: Point, rows: list[dict]) -> str | None:
        if pt.labels["impl"] != "ipa":
            return None
        pred = predicted_ipa_mb(pt.labels["L"], pt.labels["mode"], rows)
        return f"predicted {pred / 1024:.1f} GB > cap {args.mem_cap_gb:g} GB" if pred > cap_mb else None

    rows = run_points(points, timeout=args.timeout, threads=args.threads if args.device == "cpu" else None,
                      skip=skip, after=lambda rs: save_json(args.out, "ipa", meta, rs), title="bench_ipa")
    rows.sort(key=lambda r: (IMPLS.index(r["impl"]), MODES.index(r["mode"]), r["L"]))
    write_report(args.out, benchmark="ipa", title=f"IPA benchmark ({args.device}, batch 1, float32)", meta=meta,
                 rows=rows, columns=COLUMNS, group_by=("impl", "mode"), fit_range=fit_range,
                 extra_markdown=ratios_markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
