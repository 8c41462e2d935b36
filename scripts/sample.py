"""Sample backbones from a flowbb checkpoint into PDB files.

    python scripts/sample.py ckpt_path=runs/NAME/checkpoints/last.ckpt lengths=[100,200,300] samples_per_length=8 \
        out_dir=samples/NAME [num_steps=100] [noise_scale=0] [seed=0] [save_traj=true] [overwrite=true] [device=cpu]
        [trust_checkpoint=true] [max_length=2000] [force=true] [estimate=false] [step_progress=auto|true|false]

Keys and defaults: configs/sample.yaml. Output: out_dir/length_<L>/sample_<i>.pdb (chain A; protein checkpoints:
N, CA, C, O, poly-GLY; RNA checkpoints: the 12 rebuilt backbone atoms, residues N or residue_name=A|C|G|U),
with save_traj the x_t and clean-prediction trajectories (num_steps + 1 models each), out_dir/samples.csv (one row
per sample: path, length, seed, seconds, checkpoint, sampler settings) and out_dir/sample_config.yaml.
The logic lives in flowbb.inference (no Lightning import); this script parses the config, shows progress and a
summary.
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

REPO = Path(__file__).resolve().parents[1]
STEP_BAR_MIN_SECONDS = 10.0  # step_progress=auto: batches estimated at least this long get a per-step bar


def run(cfg: DictConfig) -> int:
    """Sample as configured; returns the process exit code (2 on a configuration / checkpoint / out_dir error)."""
    from rich.console import Console
    from rich.table import Table
    from tqdm.auto import tqdm

    from flowbb.errors import UserError
    from flowbb.inference.checkpoint import load_checkpoint
    from flowbb.inference.cost import StepProgress, check_max_length, counting_model_fn, estimate_cost
    from flowbb.inference.generate import SamplingSettings, check_lengths, generate, plan_batches

    console = Console(stderr=True, soft_wrap=True)  # no hard line breaks inside paths/messages
    if OmegaConf.is_missing(cfg, "ckpt_path") or not cfg.ckpt_path:
        console.print("[red]error:[/red] ckpt_path is required, e.g. ckpt_path=runs/NAME/checkpoints/last.ckpt")
        return 2
    try:
        raw = cfg.lengths
        lengths = check_lengths(list(raw) if OmegaConf.is_list(raw) else raw)
        check_max_length(lengths, int(cfg.get("max_length", 2000)), bool(cfg.get("force", False)))
        settings = SamplingSettings(num_steps=cfg.num_steps, rot_rate=cfg.rot_rate, noise_scale=cfg.noise_scale,
                                    self_condition=cfg.self_condition, clash_guidance=cfg.clash_guidance,
                                    clash_guidance_min_t=cfg.clash_guidance_min_t,
                                    langevin_rate=cfg.langevin_rate, temperature=cfg.temperature,
                                    max_tokens=int(cfg.max_tokens),
                                    save_traj=bool(cfg.save_traj))
        out_dir = Path(str(cfg.out_dir)).expanduser()
        if out_dir.is_dir() and any(out_dir.iterdir()) and not cfg.overwrite:
            raise FileExistsError(f"out_dir {out_dir} is not empty; choose another out_dir or pass overwrite=true")
        loaded = load_checkpoint(cfg.ckpt_path, use_ema=bool(cfg.use_ema), device=cfg.device,
                                 trust=bool(cfg.get("trust_checkpoint", False)))
    except (UserError, FileExistsError, ValueError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 2

    resolved = settings.resolved(loaded.flow_cfg)
    console.print(f"checkpoint {loaded.path} (step {loaded.global_step}, {loaded.weights} weights, "
                  f"model {loaded.cfg.model.get('_target_')}, {loaded.molecule.name}) on {loaded.device}")
    console.print(f"sampling {len(lengths)} length(s) x {cfg.samples_per_length}: num_steps={resolved.num_steps} "
                  f"rot_rate={resolved.rot_rate} noise_scale={resolved.noise_scale} "
                  f"self_condition={resolved.self_condition} clash_guidance={resolved.clash_guidance} "
                  f"(t >= {resolved.clash_guidance_min_t}) langevin_rate={resolved.langevin_rate} "
                  f"temperature={resolved.temperature} max_tokens={resolved.max_tokens} seed={cfg.seed}")
    plan = plan_batches(lengths, int(cfg.samples_per_length), resolved.max_tokens)
    batch_seconds = None
    if cfg.get("estimate", True):
        cost = estimate_cost(loaded.model, loaded.model_fn, loaded.flow_cfg, plan, resolved, loaded.device)
        batch_seconds = cost.batch_seconds
        console.print(cost.describe(loaded.device))
    step_mode = str(cfg.get("step_progress", "auto")).lower()

    def show_steps(i: int) -> bool:
        if not cfg.progress or step_mode == "false":
            return False
        return step_mode == "true" or (batch_seconds is not None and batch_seconds[i] >= STEP_BAR_MIN_SECONDS)

    steps = StepProgress(plan, resolved.num_steps + 1, show_steps,
                         lambda n, desc: tqdm(total=n, desc=desc, unit="step", leave=False, dynamic_ncols=True))
    model_fn = counting_model_fn(loaded.model_fn, steps)
    total = len(dict.fromkeys(lengths)) * int(cfg.samples_per_length)
    bar = tqdm(total=total, unit="backbone", disable=not cfg.progress, dynamic_ncols=True)

    def on_batch(batch, seconds: float) -> None:
        bar.set_postfix_str(f"L={batch.length} {seconds / len(batch.indices):.2f} s/backbone")
        bar.update(len(batch.indices))

    t0 = time.perf_counter()
    try:
        samples = generate(model_fn, loaded.flow_cfg, lengths, int(cfg.samples_per_length), out_dir,
                           seed=int(cfg.seed), settings=settings, device=loaded.device,
                           checkpoint=str(loaded.path), weights=loaded.weights, overwrite=bool(cfg.overwrite),
                           on_batch=on_batch, molecule=loaded.molecule, residue_name=cfg.get("residue_name"))
    except (FileExistsError, ValueError) as exc:
        bar.close()
        console.print(f"[red]error:[/red] {exc}")
        return 2
    bar.close()
    elapsed = time.perf_counter() - t0
    (out_dir / "sample_config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))

    per_len: dict[int, list[float]] = defaultdict(list)
    for s in samples:
        per_len[s.length].append(s.seconds)
    table = Table(title=f"{len(samples)} backbones in {elapsed:.1f} s -> {out_dir}")
    table.add_column("length", justify="right")
    table.add_column("samples", justify="right")
    table.add_column("s / backbone", justify="right")
    table.add_column("folder")
    for n, secs in per_len.items():
        table.add_row(str(n), str(len(secs)), f"{sum(secs) / len(secs):.2f}", str(out_dir / f"length_{n}"))
    console.print(table)
    console.print(f"table of samples: {out_dir / 'samples.csv'}")
    return 0


@hydra.main(config_path=str(REPO / "configs"), config_name="sample", version_base="1.3")
def main(cfg: DictConfig) -> None:
    code = run(cfg)
    if code:
        sys.exit(code)


if __name__ == "__main__":
    from flowbb.cli import exit_on_bad_command_line

    exit_on_bad_command_line("sample")
    main()
