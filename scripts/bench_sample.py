"""Sampling benchmark: time and peak memory of the Euler sampler with the foldflow_flash model.

    python scripts/bench_sample.py [--ckpt CKPT] [--out bench_results/sample.json] [--device cpu] [--threads 0]

Points (each in a fresh process, through the shared harness :mod:`flowbb.bench`):

- one backbone of L = 2000 (``--long-length``; 0 leaves it out): seconds and peak extra memory;
- seconds per backbone at L = 100 and L = 300 (``--lengths``), a batch of 8 (``--batch``);

all with ``--num-steps`` (100) Euler steps, self-conditioning and the ODE (noise_scale 0), through
:func:`flowbb.inference.generate.sample_batch` (the code path of ``scripts/sample.py``, without file writing).
Seconds: median (and minimum) over ``--repeats`` whole sampling runs (default 1) after ``--warmup`` (default 0).
Without ``--ckpt`` the network is the ``foldflow_flash`` experiment's model (``configs/model/flash.yaml`` when the
experiment config is absent) with random-init weights (seed 0): fine for timing and memory, which do not depend on
the weight values. Peak extra memory: the harness's ``during`` protocol (CPU: peak RSS over the runs minus RSS
before; CUDA: peak allocated minus allocated before). The load average of the machine is recorded beside each row
(other jobs inflate the times). Writes FILE.json (``{"benchmark", "meta", ..., "rows"}``; rows ``{"L", "batch",
"status", "note", "seconds", "seconds_min", "seconds_per_backbone", "peak_mem_mb", ...}``), FILE.md and FILE.png.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path
from typing import Any

from flowbb.bench.harness import Point, run_points
from flowbb.bench.report import Column, save_json, write_report

REPO = Path(__file__).resolve().parents[1]
EXPERIMENT = "foldflow_flash"
COLUMNS: list[Column] = [("L", "L", "d"), ("batch", "batch", "d"), ("seconds", "seconds", ".2f"),
                         ("s / backbone", "seconds_per_backbone", ".3f"),
                         ("peak extra GB", "peak_mem_mb", lambda mb: f"{mb / 1024:.3f}"),
                         ("load", "load_avg_1min_start", ".1f"), ("status", "status", ""), ("note", "note", "")]


def build_random_model(seed: int = 0):
    """(model, :class:`~flowbb.flow.config.FlowConfig`, source) of the foldflow_flash experiment with random-init
    weights (the composed ``cfg.flow`` converted here, where it enters)."""
    import torch
    from hydra import compose, initialize_config_dir

    from flowbb.flow.config import as_flow_config
    from flowbb.inference.checkpoint import build_model

    exp_file = REPO / "configs" / "experiment" / f"{EXPERIMENT}.yaml"
    overrides = [f"paths.root={REPO}", "paths.run_dir=/tmp/flowbb_bench_sample_run"]
    if exp_file.is_file():
        overrides.append(f"experiment={EXPERIMENT}")
        source = f"configs/experiment/{EXPERIMENT}.yaml (random init)"
    else:
        overrides += ["~experiment", "model=flash"]
        source = "configs/model/flash.yaml (random init)"
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    torch.manual_seed(seed)
    return build_model(cfg.model), as_flow_config(cfg.flow), source


def point(L: int, batch: int, num_steps: int = 100, device: str = "cpu", threads: int = 0, ckpt: str | None = None,
          repeats: int = 1, warmup: int = 0) -> dict[str, Any]:
    """Sample ``batch`` backbones of ``L`` residues in one batch, measured in this process."""
    import torch

    from flowbb.bench.measure import measure, setup_torch

    setup_torch(device, threads, flush_denormal=False)
    from flowbb.inference.generate import SamplingSettings, sample_batch, sample_seed

    dev = torch.device(device)
    if ckpt:
        from flowbb.inference.checkpoint import load_checkpoint

        loaded = load_checkpoint(ckpt, device=dev)
        model, flow_cfg, source = loaded.model, loaded.flow_cfg, f"{loaded.path} ({loaded.weights} weights)"
    else:
        model, flow_cfg, source = build_random_model()
        model = model.to(dev).eval()
    settings = SamplingSettings(num_steps=num_steps, noise_scale=0.0, self_condition=True, max_tokens=L * batch)
    seeds = [sample_seed(0, L, i) for i in range(batch)]
    finite: list[bool] = []

    def run() -> None:
        with torch.inference_mode():
            out = sample_batch(model, flow_cfg, L, seeds, settings, dev)
        finite.append(bool(torch.isfinite(out["atoms"]).all()))

    load0 = os.getloadavg()[0]
    out = measure(run, device, repeats=repeats, warmup=warmup, memory="during")
    out.update(seconds_per_backbone=out["seconds"] / batch, num_steps=num_steps, device=str(dev),
               finite=all(finite), params=sum(p.numel() for p in model.parameters()), model=source,
               threads=torch.get_num_threads(), load_avg_1min_start=load0, load_avg_1min_end=os.getloadavg()[0])
    return out


def main(argv: list[str] | None = None) -> int:
    """Parse the flags, run the points, write the report."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", default=None, help="flowbb checkpoint (default: random-init foldflow_flash model)")
    p.add_argument("--out", type=Path, default=REPO / "bench_results" / "sample.json")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--num-steps", type=int, default=100)
    p.add_argument("--long-length", type=int, default=2000, help="one backbone of this length (0: none)")
    p.add_argument("--lengths", type=int, nargs="+", default=[100, 300])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeats", type=int, default=1, help="timed sampling runs per point (median reported)")
    p.add_argument("--warmup", type=int, default=0, help="untimed sampling runs before them")
    p.add_argument("--timeout-s", type=float, default=3600)
    args = p.parse_args(argv)

    plan = ([(args.long_length, 1)] if args.long_length > 0 else []) + [(n, args.batch) for n in args.lengths]
    common = {"num_steps": args.num_steps, "device": args.device, "threads": args.threads, "ckpt": args.ckpt,
              "repeats": args.repeats, "warmup": args.warmup}
    points = [Point({"L": L, "batch": b}, point, {"L": L, "batch": b, **common}) for L, b in plan]
    meta = {"experiment": EXPERIMENT if not args.ckpt else args.ckpt, "num_steps": args.num_steps,
            "device": args.device, "threads": args.threads or "torch default", "repeats": args.repeats,
            "warmup": args.warmup, "cpu_count": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version()}
    rows = run_points(points, timeout=args.timeout_s, threads=args.threads, cwd=REPO,
                      after=lambda rs: save_json(args.out, "sample", meta, rs), title="bench_sample")
    write_report(args.out, benchmark="sample", title=f"Sampling ({args.device}, {args.num_steps} steps)", meta=meta,
                 rows=rows, columns=COLUMNS, group_by=("batch",))
    return 0


if __name__ == "__main__":
    sys.exit(main())
