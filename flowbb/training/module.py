"""LightningModule of flowbb: owns the FlowModel, the interpolant and the losses.

One training step (manual optimisation, so that bad steps can be skipped cleanly under DDP):

1. clean frames and torsions from the batch atoms, as the batch's molecule type says (:mod:`flowbb.molecules`;
   protein: Gram-Schmidt on N, CA, C, translation = CA, Å, and psi; RNA: C4', O4', C3' and eight torsions);
2. corruption by the interpolant (t, prior, coupling, path) with the module's seeded generator;
3. self-conditioning on about half of the steps: a no-grad first pass whose ``pred_trans`` becomes
   ``sc_trans`` of the second pass;
4. flow losses of the batch's molecule type (per term, per t-bin);
5. backward, gradient norm and clipping; the step is skipped (and counted) when the loss (decision shared by
   all ranks) or the gradient norm is not finite; else AdamW step and learning-rate schedule step.

Geometry (frames, interpolation, losses) always runs in float32; only the network runs under the
trainer's autocast (``precision: bf16-mixed``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
import torch
from omegaconf import DictConfig, OmegaConf

from flowbb.flow.config import FlowConfig, as_flow_config
from flowbb.flow.interpolant import Interpolant
from flowbb.flow.losses import flow_losses, t_bin_losses
from flowbb.inference.checkpoint import build_model
from flowbb.molecules import molecule_of
from flowbb.training.guard import NonFiniteGuard
from flowbb.training.schedule import lr_lambda

Tensor = torch.Tensor

GUARD_KEY = "nonfinite_guard"
REQUIRED_BATCH_KEYS = ("atoms", "res_mask", "residue_index")


def _to_dictconfig(cfg: Mapping[str, Any] | DictConfig) -> DictConfig:
    if isinstance(cfg, DictConfig):
        return cfg
    return OmegaConf.create(dict(cfg))


def clean_frames(batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Clean frames and torsions from a datamodule batch, by its molecule type (:func:`flowbb.molecules.molecule_of`).

    Args:
        batch: ``atoms [B, L, A, 3]`` (Å; protein A = 4: N, CA, C, O; RNA A = 12), ``res_mask [B, L]``,
            ``residue_index [B, L]``, optional ``atom_mask [B, L, A]`` and ``molecule [B]``.
    Returns:
        ``rots_1 [B, L, 3, 3]``, ``trans_1 [B, L, 3]`` (frame origin, Å), the true torsions (protein:
        ``psi_1 [B, L]`` radians and ``psi_mask [B, L]`` bool; RNA: ``torsions_1 [B, L, 8, 2]``,
        ``torsion_mask [B, L, 8]``), ``res_mask [B, L]`` (float), ``residue_index``, ``atoms`` (float32) and
        ``molecule`` when the batch has it. Padded positions get identity rotations and zero translations.
    """
    for key in REQUIRED_BATCH_KEYS:
        if key not in batch:
            raise KeyError(f"training batch has no '{key}' (keys: {sorted(batch)})")
    molecule = molecule_of(batch)
    atoms = batch["atoms"].float()
    mask = batch["res_mask"].float()
    if atoms.dim() != 4 or atoms.shape[-2:] != (molecule.num_atoms, 3) or mask.shape != atoms.shape[:2]:
        raise ValueError(f"training batch ({molecule.name}): expected atoms [B, L, {molecule.num_atoms}, 3] and "
                         f"res_mask [B, L], got {tuple(atoms.shape)} and {tuple(mask.shape)}")
    atom_mask = batch["atom_mask"].float() if "atom_mask" in batch else torch.ones_like(atoms[..., 0])
    out = molecule.clean(atoms, atom_mask, mask, batch["residue_index"])
    out.update(res_mask=mask, residue_index=batch["residue_index"].long(), atoms=atoms)
    if "molecule" in batch:
        out["molecule"] = batch["molecule"]
    return out


def model_inputs(noisy: Mapping[str, Tensor], sc_trans: Tensor) -> dict[str, Tensor]:
    """The FlowModel input dict from a corrupted batch and a self-conditioning translation ``[B, L, 3]``."""
    return {"rots_t": noisy["rots_t"], "trans_t": noisy["trans_t"], "t": noisy["t"],
            "res_mask": noisy["res_mask"], "residue_index": noisy["residue_index"], "sc_trans": sc_trans}


class FlowModule(pl.LightningModule):
    """Model + interpolant + losses + optimisation.

    Args:
        cfg: the full (resolved) training config, or at least its ``model``, ``flow``, ``optim``, ``guard``
            and ``seed`` entries. Stored in the checkpoint under ``hyper_parameters["cfg"]``.
    """

    def __init__(self, cfg: Mapping[str, Any] | DictConfig) -> None:
        super().__init__()
        cfg = _to_dictconfig(cfg)
        for key in ("model", "flow", "optim", "guard", "seed"):
            if key not in cfg:
                raise KeyError(f"FlowModule: config has no '{key}' entry")
        self.save_hyperparameters({"cfg": OmegaConf.to_container(cfg, resolve=True)}, logger=False)
        self.cfg = cfg
        self.automatic_optimization = False
        self.model = build_model(cfg.model)
        self.flow_cfg: FlowConfig = as_flow_config(cfg.flow)  # the one conversion of the training config
        self.interpolant = Interpolant(self.flow_cfg)
        self.guard = NonFiniteGuard(int(cfg.guard.max_consecutive_skips))
        self._generator: torch.Generator | None = None
        self._step_clock: float | None = None

    # -- randomness ------------------------------------------------------------------------------

    def generator(self) -> torch.Generator:
        """The corruption generator on the module's device, seeded from (seed, rank, step at first use)."""
        if self._generator is None or self._generator.device != self.device:
            seed = int(self.cfg.seed) * 1_000_003 + 7919 * self.global_rank + self.global_step
            self._generator = torch.Generator(device=self.device).manual_seed(seed % (2**63 - 1))
        return self._generator

    # -- forward / losses --------------------------------------------------------------------------

    def forward(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """FlowModel forward (see the model contract)."""
        return self.model(batch)

    def compute_losses(self, batch: Mapping[str, Tensor], self_condition: bool | None = None,
                       generator: torch.Generator | None = None, t: Tensor | None = None,
                       ) -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, Tensor]]:
        """Corrupt, run the network (with optional self-conditioning) and compute the losses.

        Args:
            batch: datamodule batch (``atoms``, ``res_mask``, ``residue_index``).
            self_condition: force self-conditioning on/off (default: drawn with probability
                ``flow.path.self_condition_prob``).
            generator: default :meth:`generator`.
            t: ``[B]`` times to corrupt at (default: drawn, see :meth:`Interpolant.sample_t`).
        Returns:
            (losses: scalars ``trans``, ``rot``, ``bb_atom``, ``pair_dist``, ``total``;
            per_sample: the same as ``[B]``; noisy: the corrupted batch incl. ``t [B]``).
        """
        gen = generator if generator is not None else self.generator()
        device_type = self.device.type
        with torch.autocast(device_type=device_type, enabled=False):
            clean = clean_frames(batch)
            self.check_molecule(clean)
            noisy = self.interpolant.corrupt(clean, gen, t)
            if self_condition is None:
                self_condition = self.interpolant.draw_self_condition(gen)
        sc_trans = torch.zeros_like(noisy["trans_t"])
        if self_condition:
            with torch.no_grad():
                sc_trans = self.model(model_inputs(noisy, sc_trans))["pred_trans"].detach().float()
                sc_trans = sc_trans * noisy["res_mask"][..., None]
        out = self.model(model_inputs(noisy, sc_trans))
        with torch.autocast(device_type=device_type, enabled=False):
            out = {k: v.float() for k, v in out.items()}
            losses, per_sample = flow_losses(noisy, out, self.flow_cfg, return_per_sample=True)
        noisy["self_condition"] = torch.tensor(float(self_condition))
        return losses, per_sample, noisy

    def check_molecule(self, batch: Mapping[str, Tensor]) -> None:
        """The network's torsion head must fit the batch's molecule type.

        Raises:
            ValueError: e.g. an RNA batch for a model with ``model.num_torsions`` 1.
        """
        molecule = molecule_of(batch)
        have = int(getattr(getattr(self.model, "cfg", None), "num_torsions", 1))
        if have != molecule.num_torsions:
            raise ValueError(f"the batch holds {molecule.name} chains, whose torsion head has {molecule.num_torsions} "
                             f"(sin, cos) pairs, but the model has model.num_torsions={have}: set "
                             f"model.num_torsions={molecule.num_torsions} (the RNA experiments do)")

    # -- training ----------------------------------------------------------------------------------

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if self._step_clock is None:
            self._step_clock = time.perf_counter()

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor | None:
        opt = self.optimizers()
        sched = self.lr_schedulers()
        losses, per_sample, noisy = self.compute_losses(batch)
        loss = losses["total"]
        bsz = int(batch["res_mask"].shape[0])

        # The loss decision is shared by all ranks. Backward runs even for a non-finite loss (its gradients are
        # thrown away): every rank then takes part in the same gradient all-reduce, so DDP never waits.
        loss_ok = self.trainer.strategy.reduce_boolean_decision(self.guard.is_finite(loss), all=True)
        opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        clip = self.cfg.optim.grad_clip_norm
        max_norm = float(clip) if clip is not None and float(clip) > 0 else math.inf
        params = [p for p in self.parameters() if p.grad is not None]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm) if params else torch.zeros(())
        if not loss_ok or not self.guard.is_finite(grad_norm):
            self.guard.record_skip("loss" if not loss_ok else "grad")
            opt.zero_grad(set_to_none=True)
            self._log_guard(bsz)
            return None
        opt.step()
        sched.step()
        self.guard.record_ok()

        now = time.perf_counter()
        seconds = now - (self._step_clock or now)
        self._step_clock = now
        mask = batch["res_mask"].float()
        n_res = float(mask.sum())
        metrics = {f"train/loss_{k}": v.detach() for k, v in losses.items()}
        bins = t_bin_losses(per_sample, noisy["t"], self.flow_cfg.losses.t_bins)
        metrics.update({f"train_tbin/{k}": v for k, v in bins.items()})
        metrics.update({
            "train/grad_norm": grad_norm.detach().float(),
            "train/lr": torch.tensor(opt.param_groups[0]["lr"]),
            "train/batch_size": torch.tensor(float(bsz)),
            "train/max_length": torch.tensor(float(mask.shape[1])),
            "train/residues": torch.tensor(n_res),
            "train/padding_frac": torch.tensor(1.0 - n_res / max(mask.numel(), 1)),
            "train/step_seconds": torch.tensor(seconds),
            "train/residues_per_s": torch.tensor(n_res / max(seconds, 1e-9)),
            "train/self_condition": noisy["self_condition"],
        })
        self.log_dict(metrics, on_step=True, on_epoch=False, batch_size=bsz)
        self.log("loss", loss.detach(), prog_bar=True, on_step=True, on_epoch=False, batch_size=bsz, logger=False)
        self._log_guard(bsz)
        return loss.detach()

    def _log_guard(self, bsz: int) -> None:
        self.log("train/skipped_steps", float(self.guard.skipped), on_step=True, on_epoch=False,
                 batch_size=bsz)
        self.log("train/skipped_loss", float(self.guard.skipped_loss), on_step=True, on_epoch=False,
                 batch_size=bsz)
        self.log("train/skipped_grad", float(self.guard.skipped_grad), on_step=True, on_epoch=False,
                 batch_size=bsz)

    # -- optimisation ------------------------------------------------------------------------------

    def configure_optimizers(self) -> dict[str, Any]:
        o = self.cfg.optim
        opt = torch.optim.AdamW(self.model.parameters(), lr=float(o.lr), betas=tuple(o.betas), eps=float(o.eps),
                                weight_decay=float(o.weight_decay))
        total = int(self.trainer.max_steps) if self._trainer is not None else 0
        fn = lr_lambda(str(o.schedule), int(o.warmup_steps), total, float(o.min_lr_ratio))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, fn)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # -- checkpoint extras -------------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[GUARD_KEY] = self.guard.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if GUARD_KEY in checkpoint:
            self.guard.load_state_dict(checkpoint[GUARD_KEY])
