"""Non-finite step guard: decide whether a training step may update the weights, and count skips.

A step is skipped when its loss is not finite (before backward) or when the gradient norm is not finite
(after backward; under DDP gradients are already averaged, so every rank sees the same value). The loss
decision is reduced over ranks by the caller (``strategy.reduce_boolean_decision``), so all ranks skip
together and no collective operation is left waiting. Counts are logged and stored in checkpoints.
"""

from __future__ import annotations

from typing import Any

import torch


class NonFiniteStepsError(RuntimeError):
    """Raised when too many consecutive steps were non-finite (training has diverged)."""


class NonFiniteGuard:
    """Counters and limits of skipped steps.

    Args:
        max_consecutive: raise :class:`NonFiniteStepsError` after this many skipped steps in a row
            (0: never raise).
    """

    def __init__(self, max_consecutive: int = 100) -> None:
        if max_consecutive < 0:
            raise ValueError(f"guard.max_consecutive_skips must be >= 0, got {max_consecutive}")
        self.max_consecutive = int(max_consecutive)
        self.skipped_loss = 0
        self.skipped_grad = 0
        self.consecutive = 0

    @property
    def skipped(self) -> int:
        """Total skipped steps (non-finite loss + non-finite gradients)."""
        return self.skipped_loss + self.skipped_grad

    @staticmethod
    def is_finite(value: torch.Tensor) -> bool:
        """True when every element of ``value`` is finite."""
        return bool(torch.isfinite(value.detach()).all())

    def record_ok(self) -> None:
        """A step that updated the weights."""
        self.consecutive = 0

    def record_skip(self, reason: str) -> None:
        """A skipped step; ``reason`` is ``"loss"`` or ``"grad"``."""
        if reason == "loss":
            self.skipped_loss += 1
        elif reason == "grad":
            self.skipped_grad += 1
        else:
            raise ValueError(f"NonFiniteGuard.record_skip: reason must be 'loss' or 'grad', got {reason!r}")
        self.consecutive += 1
        if self.max_consecutive and self.consecutive >= self.max_consecutive:
            raise NonFiniteStepsError(
                f"{self.consecutive} consecutive training steps had a non-finite {reason} "
                f"(skipped so far: {self.skipped_loss} loss, {self.skipped_grad} gradient); training diverged. "
                "Lower optim.lr, check the data, or raise guard.max_consecutive_skips.")

    def state_dict(self) -> dict[str, Any]:
        return {"skipped_loss": self.skipped_loss, "skipped_grad": self.skipped_grad,
                "consecutive": self.consecutive}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.skipped_loss = int(state.get("skipped_loss", 0))
        self.skipped_grad = int(state.get("skipped_grad", 0))
        self.consecutive = int(state.get("consecutive", 0))
