"""Training callbacks: step checkpoints with ``last.ckpt``, and validation by sampling backbones.

(EMA weights live in :mod:`flowbb.training.ema`; the non-finite step guard, gradient clipping and the
learning-rate schedule are part of the module's optimisation step, :mod:`flowbb.training.module`.)
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import WandbLogger

from flowbb.inference.generate import SamplingSettings, generate, stack_atoms
from flowbb.molecules import molecule_of_config
from flowbb.training.ema import EMA
from flowbb.training.metrics import mean_metrics

log = logging.getLogger(__name__)


class StepCheckpoint(ModelCheckpoint):
    """``step_<N>.ckpt`` every ``every_n_train_steps`` optimizer steps (the ``save_top_k`` most recent are kept;
    -1 keeps all) and ``last.ckpt`` at each of them and at the final step, so a run that stops at
    ``trainer.max_steps`` always leaves a ``last.ckpt`` holding that step (the file :func:`flowbb.training.train`
    resumes from).

    Args:
        dirpath: checkpoint folder (``<run_dir>/checkpoints``).
        every_n_train_steps: period of the ``step_<N>.ckpt`` files (0: only ``last.ckpt`` at the end).
        save_top_k: how many periodic checkpoints to keep, most recent first (-1: all).
    """

    def __init__(self, dirpath: str | Path, every_n_train_steps: int = 1000, save_top_k: int = 3) -> None:
        super().__init__(dirpath=str(dirpath), filename="step_{step:07d}", auto_insert_metric_name=False,
                         monitor="step", mode="max", save_top_k=save_top_k, save_last=True,
                         every_n_train_steps=max(int(every_n_train_steps), 0), save_on_train_epoch_end=False)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        step = trainer.global_step
        if step == 0 or self._should_skip_saving_checkpoint(trainer):
            return
        periodic = self._every_n_train_steps > 0 and step % self._every_n_train_steps == 0
        final = trainer.max_steps > 0 and step >= trainer.max_steps
        if not (periodic or final):
            return
        candidates = self._monitor_candidates(trainer)
        if periodic:
            self._save_topk_checkpoint(trainer, candidates)
        self._save_last_checkpoint(trainer, candidates)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # runs that end on max_epochs (or any other stop) still leave last.ckpt at their final step
        if trainer.global_step > 0 and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


def find_ema(trainer: pl.Trainer) -> EMA | None:
    """The EMA callback of ``trainer``, if any."""
    return next((cb for cb in trainer.callbacks if isinstance(cb, EMA)), None)


class SampleValidation(Callback):
    """Validation by sampling: every ``every_n_steps`` optimizer steps (and at the end of fit when
    ``run_at_end``), global rank 0 samples ``samples_per_length`` backbones of each length in ``lengths``
    with the EMA weights through the sampler's own :func:`flowbb.inference.generate.generate`: the same per-sample
    seeds (``sample_seed(seed, L, i)``, so every validation round starts from the same priors) and the same files,
    ``out_dir/step_<N>/length_<L>/sample_<i>.pdb`` plus ``samples.csv``. It logs their mean geometry
    (``val/ca_ca_deviation``, ``val/ca_ca_mean``, ``val/clashes``, ``val/rg``, ``val/rg_ratio``, ``val/helix_frac``,
    ``val/strand_frac``, ``val/coil_frac``, ``val/sample_seconds``) to every logger, plus the structures as
    ``wandb.Molecule`` when W&B logs and ``log_structures`` is set. The molecule type is the training config's
    (:func:`flowbb.molecules.molecule_of_config`): RNA runs sample through the torsion head, write the 12 rebuilt
    atoms and log the RNA geometry of :func:`flowbb.training.metrics.rna_backbone_metrics` (``val/c4_c4_mean``,
    ``val/c4_c4_deviation``, ``val/c4_c4_in_range``, ``val/clashes``, ``val/rg``, ``val/rg_ratio``,
    ``val/bond_deviation``, ``val/angle_deviation``, ``val/o3p_mean``).

    Args:
        every_n_steps: period in optimizer steps (0: only at the end).
        lengths: chain lengths to sample (a length listed twice is sampled once).
        samples_per_length: samples per length (all of one length in one batch).
        num_steps: Euler steps of the sampler (None: the flow config's ``flow.sampler.num_steps``); the other
            sampler settings are the flow config's (``flow.sampler``), as in ``scripts/sample.py``.
        seed: the run seed of the sampler (per-sample seeds derive from it, as in ``scripts/sample.py``).
        out_dir: where the PDB files go (one ``step_<N>`` folder per validation).
        log_structures: also log the PDB files to W&B as molecules.
        run_at_end: also validate when fit ends (if the last step was not just validated).
    """

    def __init__(self, every_n_steps: int, lengths: list[int], samples_per_length: int, num_steps: int | None,
                 seed: int, out_dir: str | Path, log_structures: bool = True, run_at_end: bool = True) -> None:
        if not lengths or any(int(n) < 2 for n in lengths):
            raise ValueError(f"callbacks.validation.lengths: need lengths >= 2, got {list(lengths)}")
        if samples_per_length < 1 or (num_steps is not None and num_steps < 1):
            raise ValueError("callbacks.validation: samples_per_length and num_steps must be >= 1")
        if int(seed) < 0:
            raise ValueError(f"callbacks.validation.seed must be >= 0, got {seed}")
        self.every_n_steps = int(every_n_steps)
        self.lengths = [int(n) for n in lengths]
        self.samples_per_length = int(samples_per_length)
        self.num_steps = None if num_steps is None else int(num_steps)
        self.seed = int(seed)
        self.out_dir = Path(out_dir)
        self.log_structures = bool(log_structures)
        self.run_at_end = bool(run_at_end)
        self._last_step = -1
        self.last_metrics: dict[str, float] = {}

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        step = trainer.global_step
        if self.every_n_steps > 0 and step > 0 and step % self.every_n_steps == 0 and step != self._last_step:
            self.validate(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.run_at_end and trainer.global_step > 0 and trainer.global_step != self._last_step:
            self.validate(trainer, pl_module)

    @torch.no_grad()
    def validate(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, float]:
        """Sample, write, measure and log (rank 0 only; other ranks return at once). Returns the metrics."""
        step = trainer.global_step
        self._last_step = step
        if not trainer.is_global_zero:
            return {}
        model = pl_module.model
        molecule = molecule_of_config(pl_module.cfg)
        ema = find_ema(trainer)
        step_dir = self.out_dir / f"step_{step:07d}"
        # every sample of one length in one batch (the padding-free batches of the sampler)
        settings = SamplingSettings(num_steps=self.num_steps, max_tokens=max(self.lengths) * self.samples_per_length)
        was_training = model.training
        ctx = ema.swapped(pl_module) if ema is not None else contextlib.nullcontext()
        try:
            with ctx:
                model.eval()
                samples = generate(lambda b: model(b), pl_module.flow_cfg, self.lengths, self.samples_per_length,
                                   step_dir, seed=self.seed, settings=settings, device=pl_module.device,
                                   weights="ema" if ema is not None else "raw", overwrite=True, molecule=molecule)
        finally:
            model.train(was_training)
        seconds = sum(s.seconds for s in samples)  # sampling time of all batches, without the file writing
        atoms, res_mask = stack_atoms(samples)
        metrics = mean_metrics(molecule.sample_metrics(atoms, res_mask), prefix="val/")
        metrics["val/sample_seconds"] = seconds
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)
            if self.log_structures and isinstance(logger, WandbLogger):
                import wandb

                molecules = [wandb.Molecule(str(s.path), caption=f"length_{s.length}/{s.path.stem}")
                             for s in samples]
                logger.experiment.log({"val/samples": molecules, "trainer/global_step": step})
        log.info("validation at step %d: %s (%.1f s, PDBs in %s)", step,
                 ", ".join(f"{k[4:]}={v:.3g}" for k, v in metrics.items() if k != "val/sample_seconds"),
                 seconds, step_dir)
        self.last_metrics = metrics
        return metrics


class StepCostNote(Callback):
    """Says once, after a few measured steps, what a training step costs on this machine and what
    ``trainer.max_steps`` would take, and points to the CPU recipe (``experiment=cpu_small``). ``train()`` adds it when
    a paper-size model trains on CPU.

    Args:
        num_params: parameters of the network (named in the note).
        max_steps: ``trainer.max_steps`` (-1: unbounded, no total given).
        warmup: steps not timed (the first ones pay for allocation and caches).
        measure: steps timed after the warm-up.
    """

    def __init__(self, num_params: int, max_steps: int, warmup: int = 1, measure: int = 3) -> None:
        self.num_params = num_params
        self.max_steps = max_steps
        self.warmup = warmup
        self.measure = measure
        self._seen = 0
        self._t0: float | None = None
        self.seconds_per_step: float | None = None

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        """Time ``measure`` steps after ``warmup`` and log the note once."""
        self._seen += 1
        if self._seen == self.warmup:
            self._t0 = time.perf_counter()
        elif self._t0 is not None and self.seconds_per_step is None and self._seen == self.warmup + self.measure:
            self.seconds_per_step = (time.perf_counter() - self._t0) / self.measure
            left = max(self.max_steps - trainer.global_step, 0) if self.max_steps > 0 else None
            total = f"; the {left} steps left would take {left * self.seconds_per_step / 3600:.1f} h" if left else ""
            log.warning("training a %.1fM-parameter model on CPU: %.1f s per step here%s. experiment=cpu_small is "
                        "the recipe sized for a CPU (README, \"Learning benchmark\"); a GPU runs this one with "
                        "trainer=auto or trainer=gpu", self.num_params / 1e6, self.seconds_per_step, total)
