"""Training-step benchmark: one step (forward + backward + AdamW) of the foldflow_flash and foldflow_ipa models.

    python scripts/bench_train.py --lengths 256 1024 4096 --out bench_results/train.json [--device cuda --precision bf16]

For every model and length L (batch 1), one point of the shared harness (:mod:`flowbb.bench`, a fresh process)
builds the experiment's model from the Hydra configs, runs one warm-up step and ``--repeats`` timed steps on a
synthetic backbone of L residues, and reports seconds per step (median, and minimum) and peak memory with the
harness's ``during`` protocol: the peak over the warm-up and timed steps minus the state before them, so the AdamW
state allocated by the first step counts (CPU: peak RSS; CUDA: ``torch.cuda.max_memory_allocated``). The ipa model
is skipped once it passed ``--mem-cap-gb`` or when the quadratic extrapolation from its previous length predicts it
would. Writes FILE.json (``{"benchmark", "meta", "conventions", "fit_range", "exponents", "rows"}``; rows
``{"model", "L", "status", "note", "seconds", "seconds_min", "times", "peak_mem_mb", "experiment", "precision",
"params", "threads", ...}``), FILE.md (table, exponents) and FILE.png (log-log plot with fitted exponents).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import Any

from flowbb.bench.harness import Point, run_points
from flowbb.bench.report import Column, extrapolate, save_json, write_report

REPO = Path(__file__).resolve().parents[1]
MODELS = {"flash": "foldflow_flash", "ipa": "foldflow_ipa"}
COLUMNS: list[Column] = [("model", "model", ""), ("L", "L", "d"), ("s / step", "seconds", ".3f"),
                         ("min s", "seconds_min", ".3f"), ("peak GB", "peak_mem_mb", lambda mb: f"{mb / 1024:.3f}"),
                         ("status", "status", ""), ("note", "note", "")]


# ------------------------------------------------------------------------------------------------
# one point (one model, one length, in its own process)
# ------------------------------------------------------------------------------------------------


def synthetic_batch(length: int, seed: int = 0) -> dict[str, Any]:
    """A compact random backbone of ``length`` residues (CA random walk with 3.8 Å steps), batch 1, centred:
    ``atoms [1, L, 4, 3]``, ``atom_mask [1, L, 4]``, ``res_mask [1, L]``, ``residue_index [1, L]``, ``lengths [1]``."""
    import torch

    from flowbb.geometry import so3
    from flowbb.geometry.backbone import backbone_from_frames

    g = torch.Generator().manual_seed(seed)
    steps = torch.randn(length, 3, generator=g)
    steps = 3.8 * steps / steps.norm(dim=-1, keepdim=True)
    ca = torch.cumsum(steps, 0)
    ca = ca - ca.mean(0)
    rots = so3.sample_uniform((length,), generator=g)
    psi = (torch.rand(length, generator=g) * 2 - 1) * math.pi
    atoms = backbone_from_frames(rots[None], ca[None], psi[None])
    return {"atoms": atoms, "atom_mask": torch.ones(1, length, 4, dtype=torch.bool),
            "res_mask": torch.ones(1, length), "residue_index": torch.arange(length)[None],
            "lengths": torch.tensor([length])}


def compose_config(experiment: str, overrides: list[str] | None = None):
    """The training config of ``experiment`` composed outside a Hydra run (paths pointed at the repo)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        return compose(config_name="train", overrides=[f"experiment={experiment}", f"paths.root={REPO}",
                                                       "paths.run_dir=/tmp/flowbb_bench_run",
                                                       *(overrides or [])])


def point(model: str, L: int, device: str = "cpu", repeats: int = 1, threads: int = 0,
          precision: str = "32") -> dict[str, Any]:
    """One training step of ``model`` at length ``L``, measured in this process (see the module docstring)."""
    import torch

    from flowbb.bench.measure import measure, setup_torch

    setup_torch(device, threads, flush_denormal=True)  # as flowbb.training.train does
    from flowbb.training.module import FlowModule

    module = FlowModule(compose_config(MODELS[model])).to(device)
    module.train()
    opt = torch.optim.AdamW(module.model.parameters(), lr=1e-4)
    batch = {k: v.to(device) for k, v in synthetic_batch(L).items()}
    gen = torch.Generator(device=device).manual_seed(0)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        # bf16: the network under autocast, as trainer=gpu (bf16-mixed) runs it
        with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=precision == "bf16"):
            losses, _, _ = module.compute_losses(batch, self_condition=False, generator=gen)
        losses["total"].backward()
        opt.step()

    out = measure(step, device, repeats=repeats, warmup=1, memory="during")
    out.update(experiment=MODELS[model], device=device, precision=precision,
               params=sum(p.numel() for p in module.model.parameters()), threads=torch.get_num_threads())
    return out


# ------------------------------------------------------------------------------------------------
# sweep and report
# ------------------------------------------------------------------------------------------------


def skip_reason(model: str, L: int, rows: list[dict], cap_gb: float) -> str | None:
    """Why the ipa model is not run at ``L``: a shorter length already passed the cap, or the quadratic
    extrapolation from the longest measured one predicts it would (``None``: run it)."""
    if model != "ipa":
        return None
    measured = [(r["L"], r["peak_mem_mb"]) for r in rows
                if r["model"] == model and r["status"] == "ok" and r["L"] < L]
    over = [x for x, mb in measured if mb / 1024 > cap_gb]
    if over:
        return f"L={min(over)} already passed the {cap_gb:g} GB cap"
    pred = extrapolate(measured, L, 2.0)
    if pred is not None and pred / 1024 > cap_gb:
        return (f"predicted {pred / 1024:.1f} GB > cap {cap_gb:g} GB "
                f"(quadratic extrapolation from L={max(measured)[0]})")
    return None


def main(argv: list[str] | None = None) -> int:
    """Parse the flags, run the sweep, write the report."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lengths", type=int, nargs="+", default=[256, 512, 1024, 2048, 4096])
    p.add_argument("--models", nargs="+", choices=sorted(MODELS), default=["flash", "ipa"])
    p.add_argument("--out", type=Path, default=REPO / "bench_results" / "bench_train.json")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--repeats", type=int, default=1, help="timed steps after the warm-up step (median reported)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    p.add_argument("--mem-cap-gb", type=float, default=20.0, help="skip ipa lengths past this peak memory")
    p.add_argument("--fit-range", type=int, nargs=2, default=[512, 4096], help="L range of the exponent fit")
    p.add_argument("--timeout-s", type=float, default=3600.0, help="per-point time limit")
    p.add_argument("--precision", choices=["32", "bf16"], default="32", help="bf16: autocast as trainer=gpu")
    args = p.parse_args(argv)

    meta = {"device": args.device, "precision": args.precision, "threads": args.threads or "torch default",
            "repeats": args.repeats, "batch": 1, "cpu_count": os.cpu_count()}
    points = [Point({"model": m, "L": L}, point, {"model": m, "L": L, "device": args.device,
                                                  "repeats": args.repeats, "threads": args.threads,
                                                  "precision": args.precision})
              for m in args.models for L in sorted(args.lengths)]
    rows = run_points(points, timeout=args.timeout_s, threads=args.threads, cwd=REPO,
                      skip=lambda pt, rs: skip_reason(pt.labels["model"], pt.labels["L"], rs, args.mem_cap_gb),
                      after=lambda rs: save_json(args.out, "train", meta, rs), title="bench_train")
    for r in rows:
        if r["model"] == "ipa" and r["status"] == "ok" and r["peak_mem_mb"] / 1024 > args.mem_cap_gb:
            r["note"] = f"peak above the {args.mem_cap_gb:g} GB cap; longer lengths skipped"
    write_report(args.out, benchmark="train", title=f"Training step ({args.device}, {args.precision}, batch 1)",
                 meta=meta, rows=rows, columns=COLUMNS, group_by=("model",), fit_range=tuple(args.fit_range))
    return 0


if __name__ == "__main__":
    sys.exit(main())
