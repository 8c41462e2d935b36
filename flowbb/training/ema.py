"""Exponential moving average of the network weights, as a Lightning callback.

The average covers ``pl_module.model`` (the FlowModel), keyed like ``model.state_dict()``, so that
``FlowModel.load_state_dict(checkpoint["ema_state_dict"])`` loads it directly. It is

- updated after every optimizer step that really happened (steps skipped by the non-finite guard do not count),
  with the usual warm-up ``decay_n = min(decay, (1 + n) / (10 + n))`` after n updates;
- saved in every checkpoint (``checkpoint["ema_state_dict"]`` and ``checkpoint["ema_num_updates"]``) and
  restored on resume;
- swapped into the model for validation sampling (:meth:`EMA.swapped`) and permanently at the end of fit,
  so the module a finished ``trainer.fit`` leaves behind carries the EMA weights.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback

from flowbb.inference.checkpoint import EMA_KEY, EMA_UPDATES_KEY

Tensor = torch.Tensor


class EMA(Callback):
    """EMA of ``pl_module.model`` weights.

    Args:
        decay: target decay in [0, 1) (0.999 typical); the effective decay warms up from 0.1.
    """

    def __init__(self, decay: float = 0.999) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"callbacks.ema.decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self.num_updates = 0
        self.shadow: dict[str, Tensor] | None = None
        self._backup: dict[str, Tensor] | None = None
        self._last_step = -1
        self._param_keys: set[str] = set()

    # -- state -----------------------------------------------------------------------------------

    @staticmethod
    def _model(pl_module: pl.LightningModule) -> torch.nn.Module:
        model = getattr(pl_module, "model", None)
        if not isinstance(model, torch.nn.Module):
            raise TypeError("EMA callback: the LightningModule has no `model` attribute (torch.nn.Module)")
        return model

    def _init_shadow(self, model: torch.nn.Module) -> None:
        self._param_keys = {name for name, _ in model.named_parameters()}
        if self.shadow is None:
            self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}
            return
        state = model.state_dict()
        missing = sorted(set(state) - set(self.shadow))
        unexpected = sorted(set(self.shadow) - set(state))
        if missing or unexpected:
            raise RuntimeError(f"EMA state from the checkpoint does not match the model: missing {missing[:5]}, "
                               f"unexpected {unexpected[:5]}")
        self.shadow = {k: self.shadow[k].to(device=v.device, dtype=v.dtype) for k, v in state.items()}

    def current_decay(self) -> float:
        """Decay used for the next update: ``min(decay, (1 + n) / (10 + n))``."""
        n = self.num_updates
        return min(self.decay, (1.0 + n) / (10.0 + n))

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """One EMA step from the current weights (parameters averaged, buffers copied)."""
        if self.shadow is None:
            self._init_shadow(model)
        assert self.shadow is not None
        d = self.current_decay()
        ema_p, cur_p = [], []
        for k, v in model.state_dict().items():
            if k in self._param_keys and v.is_floating_point():
                ema_p.append(self.shadow[k])
                cur_p.append(v.detach())
            else:
                self.shadow[k].copy_(v)
        if ema_p:
            torch._foreach_lerp_(ema_p, cur_p, 1.0 - d)
        self.num_updates += 1

    # -- swapping --------------------------------------------------------------------------------

    @torch.no_grad()
    def swap_in(self, pl_module: pl.LightningModule) -> None:
        """Load the EMA weights into the model, keeping a copy of the training weights."""
        if self.shadow is None or self._backup is not None:
            return
        model = self._model(pl_module)
        self._backup = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(self.shadow)

    @torch.no_grad()
    def swap_out(self, pl_module: pl.LightningModule) -> None:
        """Restore the training weights saved by :meth:`swap_in`."""
        if self._backup is None:
            return
        self._model(pl_module).load_state_dict(self._backup)
        self._backup = None

    @contextlib.contextmanager
    def swapped(self, pl_module: pl.LightningModule) -> Iterator[None]:
        """Context in which the model holds the EMA weights (a no-op when they are already swapped in)."""
        swap = self.shadow is not None and self._backup is None
        if swap:
            self.swap_in(pl_module)
        try:
            yield
        finally:
            if swap:
                self.swap_out(pl_module)

    # -- Lightning hooks ---------------------------------------------------------------------------

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._init_shadow(self._model(pl_module))
        self._last_step = trainer.global_step

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        if trainer.global_step > self._last_step:  # an optimizer step happened
            self.update(self._model(pl_module))
            self._last_step = trainer.global_step

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Keep the EMA weights in the model after fit; the training weights stay in the backup, so a
        # checkpoint written after this point still stores them under ``state_dict``.
        self.swap_in(pl_module)

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay}

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        if self.shadow is None:
            return
        checkpoint[EMA_KEY] = {k: v.detach().clone().cpu() for k, v in self.shadow.items()}
        checkpoint[EMA_UPDATES_KEY] = self.num_updates
        if self._backup is not None:  # saved while EMA weights are swapped in: store the training weights
            prefix = "model."
            for k, v in self._backup.items():
                checkpoint["state_dict"][prefix + k] = v.detach().clone().cpu()

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        if EMA_KEY in checkpoint:
            self.shadow = dict(checkpoint[EMA_KEY])
            self.num_updates = int(checkpoint.get(EMA_UPDATES_KEY, 0))
