"""Sampling benchmark: time and peak memory of the Euler sampler with the foldflow_flash model.

    python scripts/bench_sample.py [--ckpt CKPT] [--out bench_results/sample.json] [--device cpu] [--threads 0]

Measurements (each in a fresh subprocess, so that peak memory is clean):

- one backbone of L = 2000 (``--long-length``): seconds and peak extra memory;
- seconds per backbone at L = 100 and L = 300 (``--lengths``), a batch of 8 (``--batch``);

all with ``--num-steps`` (100) Euler steps, self-conditioning and the ODE (noise_scale 0), through
:func:`flowbb.inference.generate.sample_batch` (the code path of ``scripts/sample.py``, without file writing).
Without ``--ckpt`` the network is the ``foldflow_flash`` experiment's model (``configs/model/flash.yaml`` when the
experiment config is absent) with random-init weights (seed 0): fine for timing and memory, which do not depend on
the weight values. Peak extra memory on CPU: the peak resident set size during sampling minus the resident size just
before it (the peak is reset through ``/proc/self/clear_refs``); on CUDA ``torch.cuda.max_memory_allocated`` minus
the allocation before. The load average of the machine is recorded beside each row (other jobs inflate the times).
Writes the JSON to ``--out`` and prints it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from flowbb.memory import reset_peak_rss, rss_bytes

REPO = Path(__file__).resolve().parents[1]
EXPERIMENT = "foldflow_flash"


def build_random_model(seed: int = 0):
    """(model, flow_cfg, source) of the foldflow_flash experiment with random-init weights."""
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
    model = build_model(cfg.model)
    return model, as_flow_config(cfg.flow), source


def worker(args: argparse.Namespace) -> dict:
    """One measurement (``--length``, ``--batch``) in this process; returns its row."""
    import torch

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    from flowbb.inference.generate import SamplingSettings, sample_batch, sample_seed

    device = torch.device(args.device)
    if args.ckpt:
        from flowbb.inference.checkpoint import load_checkpoint

        loaded = load_checkpoint(args.ckpt, device=device)
        model, flow_cfg, source = loaded.model, loaded.flow_cfg, f"{loaded.path} ({loaded.weights} weights)"
    else:
        model, flow_cfg, source = build_random_model()
        model = model.to(device).eval()
    n_params = sum(p.numel() for p in model.parameters())
    settings = SamplingSettings(num_steps=args.num_steps, noise_scale=0.0, self_condition=True,
                                max_tokens=args.length * args.batch)
    seeds = [sample_seed(0, args.length, i) for i in range(args.batch)]

    def model_fn(batch):
        return model(batch)

    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        reset = True
    else:
        base = rss_bytes("VmRSS")
        reset = reset_peak_rss()
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = sample_batch(model_fn, flow_cfg, args.length, seeds, settings, device)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    peak = (torch.cuda.max_memory_allocated() if cuda else rss_bytes("VmHWM")) - base
    atoms = out["atoms"]
    return {
        "length": args.length, "batch": args.batch, "num_steps": args.num_steps, "device": str(device),
        "seconds": seconds, "seconds_per_backbone": seconds / args.batch,
        "peak_extra_memory_gb": peak / 1e9, "peak_reset": reset, "rss_before_gb": base / 1e9 if not cuda else None,
        "finite": bool(torch.isfinite(atoms).all()), "params": n_params, "model": source,
        "threads": torch.get_num_threads(), "load_avg_1min_start": load0, "load_avg_1min_end": os.getloadavg()[0],
    }


def run_one(length: int, batch: int, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--worker", "--length", str(length), "--batch", str(batch),
           "--num-steps", str(args.num_steps), "--device", args.device, "--threads", str(args.threads)]
    if args.ckpt:
        cmd += ["--ckpt", args.ckpt]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout_s, cwd=REPO, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        return {"length": length, "batch": batch, "status": "failed",
                "note": f"exit {proc.returncode}: {' | '.join(tail)}", "wall_s": time.perf_counter() - t0}
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    row.update(status="ok", wall_s=time.perf_counter() - t0)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", default=None, help="flowbb checkpoint (default: random-init foldflow_flash model)")
    p.add_argument("--out", default=str(REPO / "bench_results" / "sample.json"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--num-steps", type=int, default=100)
    p.add_argument("--long-length", type=int, default=2000)
    p.add_argument("--lengths", type=int, nargs="+", default=[100, 300])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--timeout-s", type=float, default=3600)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--length", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return

    rows = []
    plan = [(args.long_length, 1)] + [(n, args.batch) for n in args.lengths]
    for length, batch in plan:
        row = run_one(length, batch, args)
        rows.append(row)
        print(f"L={length} batch={batch}: " + (f"{row['seconds']:.1f} s ({row['seconds_per_backbone']:.2f} s/backbone), "
              f"peak extra {row['peak_extra_memory_gb']:.3f} GB, load {row['load_avg_1min_start']:.1f}"
              if row["status"] == "ok" else row["note"]), file=sys.stderr, flush=True)
    result = {
        "benchmark": "sample", "experiment": EXPERIMENT, "num_steps": args.num_steps, "device": args.device,
        "cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
        "rows": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
