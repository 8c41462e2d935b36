"""Training-step benchmark: one step (forward + backward + AdamW) of the foldflow_flash and foldflow_ipa models.

    python scripts/bench_train.py --lengths 256 1024 4096 --out bench_results/train.json

For every model and length L (batch 1), a fresh subprocess builds the experiment's model from the Hydra
configs, runs one warm-up step and ``--repeats`` timed steps on a synthetic backbone of L residues, and
reports seconds per step and peak memory: on CPU the peak resident set size during the steps minus the
resident size before them (``/proc/self/status`` VmHWM after resetting it); on CUDA
``torch.cuda.max_memory_allocated``. The ipa model is skipped once it passed ``--mem-cap-gb`` or when the
quadratic extrapolation from its previous length predicts it would. Writes FILE.json (rows), FILE.md
(markdown table) and FILE.png (log-log plot with fitted exponents).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

from flowbb.memory import reset_peak_rss, rss_bytes

REPO = Path(__file__).resolve().parents[1]
MODELS = {"flash": "foldflow_flash", "ipa": "foldflow_ipa"}


# ------------------------------------------------------------------------------------------------
# worker (one model, one length, in a fresh process)
# ------------------------------------------------------------------------------------------------


def synthetic_batch(length: int, seed: int = 0):
    """A compact random backbone of ``length`` residues (CA random walk with 3.8 Å steps), batch 1, centred."""
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


def worker(model: str, length: int, device: str, repeats: int, threads: int, precision: str = "32") -> dict:
    import torch

    torch.set_flush_denormal(True)  # as flowbb.training.train does, before the thread pool starts
    if threads > 0:
        torch.set_num_threads(threads)
    from flowbb.training.module import FlowModule

    cfg = compose_config(MODELS[model])
    module = FlowModule(cfg).to(device)
    module.train()
    opt = torch.optim.AdamW(module.model.parameters(), lr=1e-4)
    batch = {k: v.to(device) for k, v in synthetic_batch(length).items()}
    gen = torch.Generator(device=device).manual_seed(0)
    n_params = sum(p.numel() for p in module.model.parameters())

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        # bf16: the network under autocast, as trainer=gpu (bf16-mixed) runs it
        with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=precision == "bf16"):
            losses, _, _ = module.compute_losses(batch, self_condition=False, generator=gen)
        losses["total"].backward()
        opt.step()

    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = rss_bytes("VmRSS")
        if not reset_peak_rss():
            raise RuntimeError("cannot reset the peak RSS (/proc/self/clear_refs)")
    step()  # warm-up (allocates optimizer state; its memory counts)
    times = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    peak = (torch.cuda.max_memory_allocated() if device.startswith("cuda") else rss_bytes("VmHWM")) - base
    return {"model": model, "experiment": MODELS[model], "length": length, "device": device, "precision": precision,
            "seconds": min(times), "seconds_all": times, "peak_mem_gb": peak / 1e9,
            "params": n_params, "threads": torch.get_num_threads(), "status": "ok", "note": ""}


# ------------------------------------------------------------------------------------------------
# driver
# ------------------------------------------------------------------------------------------------


def run_one(model: str, length: int, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--worker", "--model", model, "--lengths", str(length),
           "--device", args.device, "--repeats", str(args.repeats), "--threads", str(args.threads),
           "--precision", args.precision]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=args.timeout_s, cwd=REPO)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"model": model, "experiment": MODELS[model], "length": length, "device": args.device,
                "seconds": None, "peak_mem_gb": None, "status": "failed",
                "note": f"exit {proc.returncode}: {' | '.join(tail)}", "wall_s": time.perf_counter() - t0}
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    row["wall_s"] = time.perf_counter() - t0
    return row


def fit_exponent(rows: list[dict], key: str, lo: int, hi: int) -> float | None:
    """Least-squares slope of log(key) against log(L) over lo <= L <= hi (None with fewer than 2 points)."""
    pts = [(math.log(r["length"]), math.log(r[key])) for r in rows
           if r["status"] == "ok" and lo <= r["length"] <= hi and r[key] and r[key] > 0]
    if len(pts) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx if sxx > 0 else None


def markdown(rows: list[dict], exps: dict) -> str:
    lines = ["| model | L | seconds / step | peak memory (GB) | status | note |", "|---|---:|---:|---:|---|---|"]
    for r in rows:
        s = f"{r['seconds']:.2f}" if r.get("seconds") is not None else "-"
        m = f"{r['peak_mem_gb']:.3f}" if r.get("peak_mem_gb") is not None else "-"
        lines.append(f"| {r['model']} | {r['length']} | {s} | {m} | {r['status']} | {r.get('note', '')} |")
    lines.append("")
    for model, e in exps.items():
        lines.append(f"- {model}: memory exponent {_fmt(e['memory'])}, time exponent {_fmt(e['time'])} "
                     f"(log-log fit over L = {e['range'][0]}..{e['range'][1]})")
    return "\n".join(lines) + "\n"


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def plot(rows: list[dict], exps: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for model in MODELS:
        ok = [r for r in rows if r["model"] == model and r["status"] == "ok"]
        if not ok:
            continue
        ls = [r["length"] for r in ok]
        axes[0].loglog(ls, [r["seconds"] for r in ok], "o-",
                       label=f"{model} (slope {_fmt(exps.get(model, {}).get('time'))})")
        axes[1].loglog(ls, [r["peak_mem_gb"] for r in ok], "o-",
                       label=f"{model} (slope {_fmt(exps.get(model, {}).get('memory'))})")
    axes[0].set(xlabel="L (residues)", ylabel="seconds / training step", title="time")
    axes[1].set(xlabel="L (residues)", ylabel="peak memory (GB)", title="memory")
    for ax in axes:
        ax.legend()
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lengths", type=int, nargs="+", default=[256, 512, 1024, 2048, 4096])
    p.add_argument("--models", nargs="+", choices=sorted(MODELS), default=["flash", "ipa"])
    p.add_argument("--out", type=Path, default=REPO / "bench_results" / "bench_train.json")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--repeats", type=int, default=1, help="timed steps after the warm-up step (min is reported)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    p.add_argument("--mem-cap-gb", type=float, default=20.0, help="skip ipa lengths past this peak memory")
    p.add_argument("--fit-range", type=int, nargs=2, default=[512, 4096], help="L range of the exponent fit")
    p.add_argument("--timeout-s", type=float, default=3600.0, help="per-run time limit")
    p.add_argument("--precision", choices=["32", "bf16"], default="32", help="bf16: autocast as trainer=gpu")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", choices=sorted(MODELS), help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.worker:
        print(json.dumps(worker(args.model, args.lengths[0], args.device, args.repeats, args.threads,
                                args.precision)))
        return

    rows: list[dict] = []
    for model in args.models:
        last_ok: dict | None = None   # previous successful row of this model
        blocked: str | None = None    # why longer lengths are skipped (ipa only)
        for length in sorted(args.lengths):
            if model == "ipa" and blocked is None and last_ok is not None:
                predicted = last_ok["peak_mem_gb"] * (length / last_ok["length"]) ** 2
                if predicted > args.mem_cap_gb:
                    blocked = (f"skipped: predicted {predicted:.1f} GB > cap {args.mem_cap_gb:g} GB "
                               f"(quadratic extrapolation from L={last_ok['length']})")
            if blocked is not None:
                row = {"model": model, "experiment": MODELS[model], "length": length, "device": args.device,
                       "seconds": None, "peak_mem_gb": None, "status": "skipped", "note": blocked}
            else:
                row = run_one(model, length, args)
                if row["status"] == "ok":
                    last_ok = row
                    if model == "ipa" and row["peak_mem_gb"] > args.mem_cap_gb:
                        row["note"] = f"peak above the {args.mem_cap_gb:g} GB cap; longer lengths skipped"
                        blocked = f"skipped: L={length} already passed the {args.mem_cap_gb:g} GB cap"
            rows.append(row)
            print(json.dumps(row), flush=True)

    lo, hi = args.fit_range
    exps = {m: {"memory": fit_exponent([r for r in rows if r["model"] == m], "peak_mem_gb", lo, hi),
                "time": fit_exponent([r for r in rows if r["model"] == m], "seconds", lo, hi),
                "range": [lo, hi]} for m in args.models}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": rows, "exponents": exps, "device": args.device,
                                    "cpu_count": os.cpu_count()}, indent=2) + "\n")
    md = markdown(rows, exps)
    args.out.with_suffix(".md").write_text(md)
    plot(rows, exps, args.out.with_suffix(".png"))
    print(md)
    print(f"wrote {args.out}, {args.out.with_suffix('.md')}, {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
