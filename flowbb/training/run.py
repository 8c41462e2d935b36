"""``train(cfg)``: everything ``python train.py`` does, from a composed Hydra config.

Run directory layout (``paths.run_dir``, i.e. ``hydra.run.dir``)::

    config_resolved.yaml      the resolved config of the latest launch (also in W&B and in checkpoints)
    .hydra/                   Hydra's own record of the composition and overrides
    checkpoints/last.ckpt     latest state; a new launch with the same run dir resumes from it
    checkpoints/step_*.ckpt   periodic checkpoints (the most recent ``save_top_k``)
    metrics.csv, hparams.yaml CSV metrics (appended across resumed launches)
    wandb/                    the W&B run (``offline-run-*`` when offline: ``wandb sync`` uploads it)
    val_samples/step_*/       validation backbones, as the sampler writes them (length_<L>/sample_<i>.pdb, samples.csv)
    train.log                 the log of the launch
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ProgressBar
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from flowbb.errors import UserError, one_line
from flowbb.training.callbacks import StepCostNote
from flowbb.training.ema import EMA
from flowbb.training.loggers import build_loggers, check_wandb
from flowbb.training.module import FlowModule
from flowbb.training.preflight import LAST_CKPT, check_launch, plan_resume, resolve_auto_trainer

log = logging.getLogger(__name__)

def build_callbacks(callbacks_cfg: DictConfig | None) -> list[Callback]:
    """Instantiate every entry of the ``callbacks`` group (each has a ``_target_``); EMA goes first so that
    callbacks running at the same step (validation sampling) see the updated average."""
    if not callbacks_cfg:
        return []
    callbacks = []
    for name, entry in callbacks_cfg.items():
        if entry is None:
            continue
        if "_target_" not in entry:
            raise UserError(f"callbacks.{name}: missing _target_ (a callback entry names its class, e.g. "
                            f"+callbacks.{name}._target_=my_pkg.MyCallback)")
        callbacks.append(hydra.utils.instantiate(entry, _convert_="all"))
    return sorted(callbacks, key=lambda cb: 0 if isinstance(cb, EMA) else 1)


@rank_zero_only
def _write_resolved_config(cfg: DictConfig, run_dir: Path) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config_resolved.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))


HYDRA_SUBDIR = ".hydra"
CPU_NOTE_MIN_PARAMS = 5_000_000  # on CPU, models at least this big get the step-cost note (paper-size presets)


@rank_zero_only
def _write_hydra_record(cfg: DictConfig, run_dir: Path) -> None:
    """``<run_dir>/.hydra/{config,hydra,overrides}.yaml`` as Hydra writes them. ``configs/train.yaml`` sets
    ``hydra.output_subdir: null`` so that Hydra does not write them before the launch is checked; this writes them
    after. No-op outside a Hydra run (``train(cfg)`` called from Python)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized() or HydraConfig.instance().cfg is None:
        return
    hydra_cfg = HydraConfig.instance().cfg
    out = run_dir / HYDRA_SUBDIR
    out.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, out / "config.yaml")
    OmegaConf.save(hydra_cfg, out / "hydra.yaml")
    OmegaConf.save(hydra_cfg.hydra.overrides.task, out / "overrides.yaml")


def _build_trainer(cfg: DictConfig, callbacks: list[Callback], loggers: list[Any], run_dir: Path) -> pl.Trainer:
    """The Lightning Trainer of ``cfg.trainer``; Lightning's refusals of a trainer config (``MisconfigurationException``,
    e.g. a strategy this machine cannot run) become a one-line :class:`UserError`."""
    from hydra.errors import InstantiationException
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    try:
        return hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False,
                                       default_root_dir=str(run_dir), _convert_="all")
    except (InstantiationException, MisconfigurationException) as exc:
        cause = exc.__cause__ if isinstance(exc, InstantiationException) else exc
        if isinstance(cause, MisconfigurationException):
            raise UserError(f"the trainer config is refused by Lightning: {one_line(cause)} (see configs/trainer/)"
                            ) from None
        raise


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train from a composed config (see ``configs/train.yaml``).

    Checks the launch first (key types, hardware, W&B key, the data, the checkpoint it resumes from: see
    :mod:`flowbb.training.preflight`), so that a refused launch builds nothing and writes nothing. Then seeds
    everything, writes the resolved config (and Hydra's ``.hydra/`` record) to the run dir, builds datamodule,
    module, callbacks, loggers and trainer from their config groups, and calls ``trainer.fit``, resuming from
    ``<run_dir>/checkpoints/last.ckpt`` when it exists (or from ``ckpt_path``).

    Raises:
        UserError: a launch refused by the checks, with one line naming the cause and the fix.

    Returns:
        ``{"run_dir", "global_step", "skipped_steps", "last_checkpoint", "resumed_from"}``.
    """
    # Denormal floats slow CPU kernels several-fold (small activations of a freshly initialised network hit
    # them); flushing them to zero changes nothing that matters for training. Set before the CPU thread pool
    # starts, so that its threads inherit it. No effect on GPU kernels.
    torch.set_flush_denormal(True)
    run_dir = Path(cfg.paths.run_dir)
    # Checks first: a refused launch changes nothing in the run folder (seeding already logs to train.log).
    auto = resolve_auto_trainer(cfg)
    check_launch(cfg)
    check_wandb(cfg.get("logger"))
    datamodule = hydra.utils.instantiate(cfg.data, _convert_="all")
    if hasattr(datamodule, "check_data"):
        datamodule.check_data()  # a missing processed set, or filters that leave no chain
    plan = plan_resume(cfg, run_dir)
    pl.seed_everything(int(cfg.seed), workers=True)
    if auto:
        log.info("%s", auto)
    _write_resolved_config(cfg, run_dir)
    _write_hydra_record(cfg, run_dir)
    resolved = OmegaConf.to_container(cfg, resolve=True)

    module = FlowModule(cfg)
    callbacks = build_callbacks(cfg.get("callbacks"))
    num_params = sum(p.numel() for p in module.model.parameters())
    if cfg.trainer.get("accelerator") == "cpu" and num_params >= CPU_NOTE_MIN_PARAMS:
        callbacks.append(StepCostNote(num_params, int(cfg.trainer.get("max_steps", -1))))
    if not cfg.trainer.get("enable_progress_bar", True):  # trainer.enable_progress_bar=false silences callbacks' bar
        callbacks = [cb for cb in callbacks if not isinstance(cb, ProgressBar)]
    loggers = build_loggers(cfg.get("logger"), run_dir)
    if not loggers:  # logger=none: Lightning's LR monitor refuses to run without a logger; nothing to log it to
        callbacks = [cb for cb in callbacks if not isinstance(cb, LearningRateMonitor)]
    for logger in loggers:
        logger.log_hyperparams(resolved)
    trainer = _build_trainer(cfg, callbacks, loggers, run_dir)
    resume = plan.ckpt
    if resume:
        log.info("resuming from %s (step %d)", resume, plan.step)
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume,
                weights_only=not bool(cfg.get("trust_checkpoint", False)))
    last = run_dir / LAST_CKPT
    summary = {
        "run_dir": str(run_dir),
        "global_step": int(trainer.global_step),
        "skipped_steps": int(module.guard.skipped),
        "last_checkpoint": str(last) if last.is_file() else None,
        "resumed_from": resume,
    }
    log.info("training done: %s", summary)
    return summary
