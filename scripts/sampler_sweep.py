"""Sampler settings against one checkpoint: the same priors under each setting, samples scored as the learning benchmark
scores them (flowbb.eval.sample_quality) plus their diversity (mean pairwise TM-score).

    python scripts/sampler_sweep.py --ckpt runs/cpu_small_s7/checkpoints/step_0022000.ckpt --out bench_results/sampler_sweep/s8 \\
        --samples 16 --seed0 100 --setting '{}' --setting '{"langevin_rate": 2, "temperature": 0, "rot_rate": 20}'

Each ``--setting`` is a JSON object of :class:`flowbb.inference.generate.SamplingSettings` fields (missing ones take the
checkpoint's flow.sampler values). Sample i of every setting starts from the prior drawn with seed ``seed0 + i``.
Writes OUT.json (one record per setting) and OUT.md (a table); natural chains are not scored here (the learning
benchmark's ``--samples-dir`` does that).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

COLUMNS = ("ca_ca_deviation", "clashes_per_100", "helix_frac", "strand_frac", "rg_ratio", "rama_allowed", "mpnn_nll")


def sweep(args: argparse.Namespace) -> list[dict]:
    import torch
    from tqdm import tqdm

    from flowbb.eval.inverse_folding import ProteinMPNNDesigner
    from flowbb.eval.sample_quality import natural_reference, score_samples
    from flowbb.inference.checkpoint import load_checkpoint
    from flowbb.inference.generate import SamplingSettings, sample_batch

    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    loaded = load_checkpoint(args.ckpt, use_ema=True, device="cpu")
    _, region = natural_reference(args.processed_dir, [args.length], 20, 4)  # the region without 4 chains
    designer = None if args.no_mpnn else ProteinMPNNDesigner(num_seqs=8, temperature=0.1, device="cpu")
    seeds = list(range(args.seed0, args.seed0 + args.samples))
    records = []
    for text in args.setting:
        fields = json.loads(text)
        t0 = time.perf_counter()
        res = sample_batch(loaded.model_fn, loaded.flow_cfg, args.length, seeds, SamplingSettings(**fields))
        seconds = time.perf_counter() - t0
        atoms = [a.numpy() for a in res["atoms"]]
        rows, summary = score_samples(atoms, region, designer, seed=0,
                                      progress=lambda xs, t=text: tqdm(xs, desc=f"scoring {t}"))
        record = {"settings": fields, "sample_seconds": seconds, **{k: summary[k] for k in (*COLUMNS, "pairwise_tm")},
                  "rows": rows}
        records.append(record)
        print(json.dumps({k: v for k, v in record.items() if k != "rows"}), flush=True)
    return records


def table(records: list[dict]) -> str:
    def fmt(x: float) -> str:
        return "-" if x is None or math.isnan(x) else f"{x:.3f}"

    lines = ["| setting | " + " | ".join(COLUMNS) + " | pairwise TM |", "|---|" + "---:|" * (len(COLUMNS) + 1)]
    for r in records:
        lines.append(f"| `{json.dumps(r['settings'])}` | " + " | ".join(fmt(r[k]) for k in COLUMNS)
                     + f" | {fmt(r['pairwise_tm'])} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="output stem: OUT.json and OUT.md")
    parser.add_argument("--setting", action="append", required=True, help="JSON object of sampler settings")
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--length", type=int, default=100)
    parser.add_argument("--seed0", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-mpnn", action="store_true", help="skip the ProteinMPNN NLL (NaN in the table)")
    parser.add_argument("--processed-dir", type=Path, default=Path("data/processed/shared"),
                        help="processed set whose chains define the allowed Ramachandran region")
    args = parser.parse_args(argv)
    records = sweep(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(records, indent=1))
    args.out.with_suffix(".md").write_text(table(records))
    print(table(records))


if __name__ == "__main__":
    main()
