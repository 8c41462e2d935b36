"""Learning benchmark: does a recipe learn, and do its samples look like proteins?

    # train (python train.py with these overrides, in a subprocess) and report:
    python scripts/bench_learning.py --run-dir runs/cpu_small --out bench_results/learning/cpu_small \
        --train experiment=cpu_small trainer.max_steps=12000
    # report on an existing run directory (its step_*.ckpt and last.ckpt):
    python scripts/bench_learning.py --run-dir runs/cpu_small --out bench_results/learning/cpu_small
    # score a folder of sampled PDBs (e.g. brought back from a GPU machine) beside a processed set's chains:
    python scripts/bench_learning.py --samples-dir gpu_out/samples --processed-dir data/processed/shared --out DIR
    # one table over several reports (the ablation table):
    python scripts/bench_learning.py --compare bench_results/learning/*/learning.json --out bench_results/ablation

Report (EMA weights of every checkpoint; see :mod:`flowbb.training.heldout` and :mod:`flowbb.eval.sample_quality`):

(a) held-out loss: the run's validation chains (its datamodule split, never trained on), t = 0.1 ... 0.9, fixed
    noise, per loss term and t, and the progress of the clean prediction from x_t toward x_1, at every checkpoint;
(b) samples of the chosen checkpoint (``--sample-step``, default the last; ``--sample-minutes M`` picks the last one
    written within M minutes of the launch) at ``--lengths``, scored beside natural chains of the same lengths
    (+- ``--length-window``) from the same processed set: mean |CA-CA - 3.8|, CA clashes per 100 residues, DSSP
    helix/strand/coil, radius of gyration over 2.2 L^0.38 (natural chains measured too), fraction of (phi, psi)
    in the allowed region (the densest 10-degree bins holding 98 % of the pairs of up to 300 other chains of the
    set), ProteinMPNN mean NLL of 8 designed sequences (T = 0.1).

RNA runs (``data.molecule: rna``) get the same held-out curve; their samples are scored with the RNA backbone
geometry (consecutive C4'-C4', C4' clashes, Rg over 5.94 L^(1/3), rebuilt bond and angle deviations from the real
set, the O3'-P link; :func:`flowbb.eval.metrics.rna_backbone_metrics`) beside the run's held-out test chains
(``split.holdout``: RNA-Puzzles, CASP) of the same lengths (+- ``--length-window``), plus diversity (mean pairwise
TM-score on C4') and novelty (highest TM-score to any chain of the processed set), and lociPARSE's pMoL when it is
installed (:mod:`flowbb.eval.rna_quality`; samples and held-out chains written as poly-A, the held-out chains also
with their own sequence).

Writes ``learning.json``, ``learning.md`` (tables) and ``learning.png`` (curves) under ``--out``.
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

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MD_T = (0.1, 0.3, 0.5, 0.7, 0.9)


def checkpoints(run_dir: Path) -> list[dict]:
    """Every checkpoint of a run, one per global step, with the minutes since the launch (file times)."""
    import torch

    start = (run_dir / ".hydra" / "hydra.yaml").stat().st_mtime
    by_step: dict[int, dict] = {}
    for path in sorted((run_dir / "checkpoints").glob("*.ckpt")):
        step = int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["global_step"])
        if step not in by_step or path.name != "last.ckpt":
            by_step[step] = {"step": step, "path": str(path), "minutes": (path.stat().st_mtime - start) / 60.0}
    return [by_step[s] for s in sorted(by_step)]


def heldout_batch(cfg):
    """The run's validation chains (its datamodule split, never trained on), collated."""
    import hydra

    from flowbb.data.dataset import collate

    dm = hydra.utils.instantiate(cfg.data, _convert_="all")
    dm.setup("fit")
    return collate([dm.val_dataset[i] for i in range(len(dm.val_dataset))])


def rna_natural(cfg, lengths: list[int], window: int) -> dict[int, list[dict]]:
    """The run's held-out RNA test chains (``split.holdout``) within ``window`` nucleotides of each length."""
    import hydra

    dm = hydra.utils.instantiate(cfg.data, _convert_="all")
    dm.setup("fit")
    meta = dm.test_dataset.store.metadata
    chains = []
    for i in range(len(dm.test_dataset)):
        item = dm.test_dataset[i]
        sequence = str(meta.at[int(item["row"]), "sequence"])  # kept when no nucleotide was dropped
        chains.append(item | ({"sequence": sequence} if len(sequence) == len(item["atoms"]) else {}))
    if not chains:
        raise SystemExit("the RNA run has no held-out test chains (data.split.holdout matched nothing)")
    return {length: [c for c in chains if abs(int(c["res_mask"].sum()) - length) <= window] for length in lengths}


def score_rna_groups(samples: dict[int, list[np.ndarray]], natural: dict[int, list[dict]],
                     processed_dir: Path) -> dict[str, dict]:
    """RNA geometry of the samples (``[L, 12, 3]`` each) and of the held-out chains per length, plus the samples'
    diversity and novelty (TM-score on C4' traces)."""
    import torch
    from tqdm import tqdm

    from flowbb.eval.diversity import diversity
    from flowbb.eval.metrics import rna_backbone_metrics
    from flowbb.eval.novelty import NoveltySearcher, load_reference_processed
    from flowbb.geometry import rna

    def mean_of(rows: list[dict]) -> dict:
        return {k: float(np.mean([r[k] for r in rows])) if rows else math.nan for k in (rows[0] if rows else {})}

    from flowbb.eval.rna_quality import LociParseScorer, lociparse_available

    loci = LociParseScorer() if lociparse_available() else None

    def with_pmol(row: dict, atoms: np.ndarray, sequence: str | None = None, atom_mask=None) -> dict:
        if loci is None:
            return row
        out = row | {"pmol_poly_a": loci.score_atoms(atoms, "A" * len(atoms), atom_mask)}
        if sequence is not None and not set(sequence) - set("ACGU"):
            out["pmol_own_sequence"] = loci.score_atoms(atoms, sequence, atom_mask)
        return out

    searcher = NoveltySearcher(load_reference_processed(processed_dir, molecule="rna"), num_workers=0)
    c4 = rna.ATOM_INDEX["C4'"]
    groups: dict[str, dict] = {}
    for length, nat_chains in natural.items():
        atoms = samples.get(length, [])
        rows = [with_pmol(rna_backbone_metrics(torch.as_tensor(a, dtype=torch.float64)[None],
                                               torch.ones(1, len(a)))[0], a) for a in atoms]
        nat = [with_pmol(rna_backbone_metrics(c["atoms"][None].double(), c["res_mask"][None],
                                              c["atom_mask"][None], link_break=rna.LINK_BREAK)[0],
                         c["atoms"].numpy(), c.get("sequence"), c["atom_mask"].numpy().astype(bool))
               for c in nat_chains]
        novelty = [searcher.search(a[:, c4]).max_tm for a in tqdm(atoms, desc=f"novelty L={length}")]
        summary = mean_of(rows) | {"novelty_max_tm": float(np.mean(novelty)) if novelty else math.nan}
        summary |= {f"diversity_{k}": v for k, v in diversity([a[:, c4] for a in atoms]).items()}
        groups[str(length)] = {"samples": summary, "natural": mean_of(nat), "sample_rows": rows,
                               "natural_rows": nat, "novelty_max_tm": novelty}
    return groups


def read_sample_dir(samples_dir: Path) -> dict[int, list[np.ndarray]]:
    """Backbones ``[L, 4, 3]`` of every PDB under a sampler output folder (trajectories skipped), by length."""
    from flowbb.data.structure_io.read import read_chains

    by_length: dict[int, list[np.ndarray]] = {}
    for path in sorted(samples_dir.rglob("*.pdb")):
        if "traj" not in path.name:
            atoms = read_chains(path).chains[0].atoms
            by_length.setdefault(len(atoms), []).append(atoms)
    if not by_length:
        raise SystemExit(f"no backbone PDB files under {samples_dir}")
    return by_length


def score_groups(samples: dict[int, list[np.ndarray]], natural: dict[int, list[dict]], region, designer,
                 seed: int) -> dict[str, dict]:
    """Quality of the samples and of the natural chains, per length (see flowbb.eval.sample_quality)."""
    from tqdm import tqdm

    from flowbb.eval.sample_quality import group_summary, score_samples, structure_quality

    groups: dict[str, dict] = {}
    for length, nat_chains in natural.items():
        rows, summary = score_samples(samples.get(length, []), region, designer, seed,
                                      progress=lambda xs, n=length: tqdm(xs, desc=f"scoring samples L={n}"))
        nat = [structure_quality(c["atoms"], c["atom_mask"], region, sequence=c["sequence"], designer=designer,
                                 seed=seed) for c in tqdm(nat_chains, desc=f"scoring natural L~{length}")]
        groups[str(length)] = {"samples": summary,
                               "natural": group_summary(nat),
                               "sample_rows": rows, "natural_rows": nat,
                               "natural_names": [c["name"] for c in nat_chains]}
    return groups


def _molecule(run_dir: Path) -> str:
    from omegaconf import OmegaConf

    return OmegaConf.load(run_dir / "config_resolved.yaml").data.get("molecule", "protein")


def report(args: argparse.Namespace) -> dict:
    import torch
    from omegaconf import OmegaConf
    from tqdm import tqdm

    from flowbb.eval.inverse_folding import ProteinMPNNDesigner
    from flowbb.eval.sample_quality import natural_reference
    from flowbb.inference.checkpoint import load_checkpoint
    from flowbb.inference.generate import SamplingSettings, generate_from_checkpoint
    from flowbb.training.heldout import heldout_losses

    torch.set_flush_denormal(True)
    designer = None
    if args.mpnn and (args.samples_dir is not None or _molecule(args.run_dir) == "protein"):
        designer = ProteinMPNNDesigner(num_seqs=8, temperature=0.1, device="cpu")
    if args.samples_dir is not None:  # score backbones sampled elsewhere (e.g. on a GPU machine)
        if args.processed_dir is None:
            raise SystemExit("--samples-dir needs --processed-dir (the set whose natural chains are the reference)")
        samples = read_sample_dir(args.samples_dir)
        natural, region = natural_reference(args.processed_dir, sorted(samples), args.length_window, args.natural)
        return {"run_dir": None, "samples_dir": str(args.samples_dir), "curve": [], "overrides": [],
                "sampled_checkpoint": None, "groups": score_groups(samples, natural, region, designer, args.seed)}

    run_dir = args.run_dir
    cfg = OmegaConf.load(run_dir / "config_resolved.yaml")
    ckpts = checkpoints(run_dir)
    if not ckpts:
        raise SystemExit(f"no checkpoints under {run_dir / 'checkpoints'}")
    heldout = heldout_batch(cfg)
    molecule = cfg.data.get("molecule", "protein")
    processed_dir = Path(args.processed_dir or cfg.data.processed_dir)
    if molecule == "protein":
        natural, region = natural_reference(processed_dir, args.lengths, args.length_window, args.natural)
    else:
        natural = rna_natural(cfg, args.lengths, args.length_window)
    curve = []
    for ck in tqdm(ckpts, desc="held-out loss per checkpoint"):
        loaded = load_checkpoint(ck["path"], use_ema=True, device=args.device)
        curve.append(ck | heldout_losses(loaded.model, loaded.flow_cfg, heldout, seed=args.seed))

    if args.sample_step is not None:
        chosen = [c for c in ckpts if c["step"] == args.sample_step]
    elif args.sample_minutes is not None:
        chosen = [c for c in ckpts if c["minutes"] <= args.sample_minutes][-1:]
    else:
        chosen = ckpts[-1:]
    if not chosen:
        raise SystemExit("no checkpoint matches --sample-step / --sample-minutes")
    ck = chosen[0]
    settings = SamplingSettings(num_steps=args.num_steps, clash_guidance=args.clash_guidance,
                                clash_guidance_min_t=args.clash_guidance_min_t, langevin_rate=args.langevin_rate,
                                temperature=args.temperature)
    t0 = time.perf_counter()
    generated = generate_from_checkpoint(ck["path"], args.lengths, args.samples,
                                         args.out / f"samples_step{ck['step']}", seed=args.seed, settings=settings,
                                         device=args.device, overwrite=True)
    sample_seconds = time.perf_counter() - t0
    samples: dict[int, list[np.ndarray]] = {}
    for s in generated:
        samples.setdefault(s.length, []).append(s.atoms)
    if molecule == "protein":
        groups = score_groups(samples, natural, region, designer, args.seed)
    else:
        groups = score_rna_groups(samples, natural, processed_dir)
    return {"run_dir": str(run_dir), "experiment": cfg.get("name"), "molecule": molecule,
            "heldout_chains": len(heldout["atoms"]),
            "curve": curve, "sampled_checkpoint": ck,
            "sampling": {"num_steps": args.num_steps, "clash_guidance": args.clash_guidance,
                         "clash_guidance_min_t": args.clash_guidance_min_t, "langevin_rate": args.langevin_rate,
                         "temperature": args.temperature, "seconds": sample_seconds, "device": args.device},
            "groups": groups,
            "overrides": OmegaConf.to_container(OmegaConf.load(run_dir / ".hydra/overrides.yaml"))}


def _fmt(x: float, nd: int = 3) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def sample_table(result: dict) -> list[str]:
    head = ("| length | group | n | CA-CA dev (Å) | clashes /100 | helix | strand | helix+strand | Rg / 2.2L^0.38 "
            "| Rama allowed | MPNN NLL | pairwise TM |")
    lines = [head, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for length, g in result["groups"].items():
        for name in ("samples", "natural"):
            s = g[name]
            lines.append(f"| {length} | {name} | {int(s['count'])} | {_fmt(s['ca_ca_deviation'])} | "
                         f"{_fmt(s['clashes_per_100'], 2)} | {_fmt(s['helix_frac'], 2)} | {_fmt(s['strand_frac'], 2)} | "
                         f"{_fmt(s['helix_frac'] + s['strand_frac'], 2)} | {_fmt(s['rg_ratio'], 2)} | "
                         f"{_fmt(s['rama_allowed'], 3)} | {_fmt(s['mpnn_nll'], 3)} | "
                         f"{_fmt(s.get('pairwise_tm', math.nan), 2)} |")
    return lines


def rna_sample_table(result: dict) -> list[str]:
    head = ("| length | group | n | C4'-C4' (Å) | in 5.5-6.5 Å | clashes /100 | Rg / 5.94L^(1/3) | bond dev (Å) "
            "| angle dev (°) | O3'-P (Å) | pairwise TM | novelty max TM | pMoL poly-A | pMoL own seq |")
    lines = [head, "|---|---|---:|" + "---:|" * 11]
    for length, g in result["groups"].items():
        for name in ("samples", "natural"):
            s = g[name]
            n = len(g["sample_rows" if name == "samples" else "natural_rows"])
            lines.append(f"| {length} | {name} | {n} | {_fmt(s.get('c4_c4_mean'), 2)} | "
                         f"{_fmt(s.get('c4_c4_in_range'), 2)} | {_fmt(s.get('clashes_per_100'), 2)} | "
                         f"{_fmt(s.get('rg_ratio'), 2)} | {_fmt(s.get('bond_deviation'), 3)} | "
                         f"{_fmt(s.get('angle_deviation'), 1)} | {_fmt(s.get('o3p_mean'), 2)} | "
                         f"{_fmt(s.get('diversity_mean_pairwise_tm', math.nan), 2)} | "
                         f"{_fmt(s.get('novelty_max_tm', math.nan), 2)} | {_fmt(s.get('pmol_poly_a', math.nan), 2)} | "
                         f"{_fmt(s.get('pmol_own_sequence', math.nan), 2)} |")
    return lines


def curve_table(result: dict) -> list[str]:
    head = " | ".join(f"total t={t}" for t in MD_T)
    lines = [f"| step | minutes | mean total | {head} | progress t=0.5 |", "|---:|---:|---:|" + "---:|" * len(MD_T) + "---:|"]
    for row in result["curve"]:
        per_t = dict(zip(row["t"], row["total"], strict=True))
        prog = dict(zip(row["t"], row["progress"], strict=True))
        vals = " | ".join(_fmt(per_t.get(t, math.nan)) for t in MD_T)
        lines.append(f"| {row['step']} | {row['minutes']:.1f} | {_fmt(float(np.mean(row['total'])))} | {vals} | "
                     f"{_fmt(prog.get(0.5, math.nan))} |")
    return lines


def write_outputs(result: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    (out / "learning.json").write_text(json.dumps(result, indent=1))
    if not result["curve"]:  # scored a folder of samples
        md = [f"# sample quality: {result['samples_dir']}", "", *sample_table(result), ""]
        (out / "learning.md").write_text("\n".join(md))
        print("\n".join(md))
        return
    md = [f"# learning benchmark: {result['run_dir']}", "", f"overrides: `{' '.join(result['overrides'])}`", "",
          "## held-out loss (EMA weights)", "", *curve_table(result), "",
          (f"## samples of step {result['sampled_checkpoint']['step']} "
           f"({result['sampled_checkpoint']['minutes']:.0f} min) beside natural chains"), "",
          *(rna_sample_table(result) if result.get("molecule") == "rna" else sample_table(result)), ""]
    (out / "learning.md").write_text("\n".join(md))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    steps = [r["step"] for r in result["curve"]]
    for k, t in enumerate(result["curve"][0]["t"]):
        color = plt.cm.viridis(k / max(len(result["curve"][0]["t"]) - 1, 1))
        axes[0].plot(steps, [r["total"][k] for r in result["curve"]], color=color, label=f"t={t}")
        axes[1].plot(steps, [r["progress"][k] for r in result["curve"]], color=color, label=f"t={t}")
    axes[0].set(xlabel="step", ylabel="held-out total loss", title="held-out loss per t")
    axes[1].set(xlabel="step", ylabel="progress x_t -> x_1", title="clean prediction's progress")
    axes[0].legend(fontsize=7)
    for term in ("trans", "rot", "bb_atom", "pair_dist", "clash"):
        if term not in result["curve"][0]:  # reports written before the clash term
            continue
        axes[2].plot(steps, [float(np.mean(r[term])) for r in result["curve"]], label=term)
    axes[2].set(xlabel="step", ylabel="mean over t", title="held-out loss terms", yscale="log")
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "learning.png", dpi=110)
    print("\n".join(md))
    print(f"wrote {out / 'learning.json'}, learning.md, learning.png")


def compare(paths: list[Path], out: Path) -> None:
    """One markdown table over several ``learning.json`` reports (held-out loss and sample metrics)."""
    head = ("| run | step | mean held-out total | " + " | ".join(f"t={t}" for t in MD_T)
            + " | CA-CA dev | clashes /100 | helix+strand | Rg ratio | Rama | MPNN NLL (natural) |")
    lines = [head, "|---|---:|---:|" + "---:|" * len(MD_T) + "---:|---:|---:|---:|---:|---:|"]
    for path in paths:
        r = json.loads(Path(path).read_text())
        step = r["sampled_checkpoint"]["step"]
        row = next(c for c in r["curve"] if c["step"] == step)
        per_t = dict(zip(row["t"], row["total"], strict=True))
        for length, g in r["groups"].items():
            s, n = g["samples"], g["natural"]
            lines.append(f"| {Path(path).parent.name} (L={length}) | {step} | {_fmt(float(np.mean(row['total'])))} | "
                         + " | ".join(_fmt(per_t.get(t, math.nan)) for t in MD_T)
                         + f" | {_fmt(s['ca_ca_deviation'])} | {_fmt(s['clashes_per_100'], 2)} | "
                         f"{_fmt(s['helix_frac'] + s['strand_frac'], 2)} | {_fmt(s['rg_ratio'], 2)} | "
                         f"{_fmt(s['rama_allowed'])} | {_fmt(s['mpnn_nll'])} ({_fmt(n['mpnn_nll'])}) |")
    out.mkdir(parents=True, exist_ok=True)
    (out / "ablation.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--train", nargs="+", metavar="OVERRIDE", help="train first: python train.py OVERRIDE ...")
    parser.add_argument("--lengths", type=int, nargs="+", default=[100])
    parser.add_argument("--samples", type=int, default=16, help="samples per length")
    parser.add_argument("--num-steps", type=int, default=100, help="Euler steps per sample")
    parser.add_argument("--clash-guidance", type=float, default=None,
                        help="sampler clash guidance (default: the checkpoint's flow.sampler.clash_guidance)")
    parser.add_argument("--clash-guidance-min-t", type=float, default=None,
                        help="... from this t on (default: the checkpoint's flow.sampler.clash_guidance_min_t)")
    parser.add_argument("--langevin-rate", type=float, default=None,
                        help="sampler Langevin term on translations (default: the checkpoint's flow.sampler.langevin_rate)")
    parser.add_argument("--temperature", type=float, default=None,
                        help="... its temperature (default: the checkpoint's flow.sampler.temperature)")
    parser.add_argument("--natural", type=int, default=32, help="natural chains per length")
    parser.add_argument("--length-window", type=int, default=20)
    parser.add_argument("--sample-step", type=int)
    parser.add_argument("--sample-minutes", type=float)
    parser.add_argument("--no-mpnn", dest="mpnn", action="store_false", help="skip the ProteinMPNN NLL")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compare", type=Path, nargs="+", metavar="LEARNING_JSON")
    parser.add_argument("--samples-dir", type=Path, help="score the PDBs under this folder instead (no training, "
                        "no checkpoints; e.g. samples brought back from a GPU machine)")
    parser.add_argument("--processed-dir", type=Path, help="processed set of the natural reference chains "
                        "(default: the run's data.processed_dir)")
    parser.add_argument("--device", default="cpu", help="where checkpoints run (cpu | cuda); scoring is on CPU")
    args = parser.parse_args()
    if args.compare:
        compare(args.compare, args.out)
        return
    if args.run_dir is None and args.samples_dir is None:
        parser.error("--run-dir is required (or --compare, or --samples-dir)")
    import torch

    torch.set_num_threads(args.threads)
    if args.train:
        cmd = [sys.executable, str(REPO / "train.py"), *args.train, f"hydra.run.dir={args.run_dir}"]
        print("training:", " ".join(cmd), flush=True)
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
        if subprocess.run(cmd, cwd=REPO, env=env, check=False).returncode != 0:
            raise SystemExit("training failed (see its output above)")
    write_outputs(report(args), args.out)


if __name__ == "__main__":
    main()
