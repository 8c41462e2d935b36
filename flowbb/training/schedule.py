"""Learning-rate schedules: linear warm-up, then cosine decay to a floor or a constant rate."""

from __future__ import annotations

import math
from collections.abc import Callable

SCHEDULES = ("cosine", "constant")


def lr_lambda(schedule: str, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.0,
              ) -> Callable[[int], float]:
    """Multiplier of the base learning rate as a function of the optimizer step (for ``LambdaLR``).

    Args:
        schedule: ``cosine`` (decay from 1 to ``min_lr_ratio`` between ``warmup_steps`` and ``total_steps``)
            or ``constant`` (1 after warm-up).
        warmup_steps: linear warm-up from ``1 / warmup_steps`` to 1 over this many steps (0: none).
        total_steps: the last step of the cosine (``trainer.max_steps``); unused for ``constant``.
        min_lr_ratio: floor of the cosine as a fraction of the base rate.
    Returns:
        ``f(step) -> float``.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"optim.schedule: expected one of {SCHEDULES}, got {schedule!r}")
    if warmup_steps < 0:
        raise ValueError(f"optim.warmup_steps must be >= 0, got {warmup_steps}")
    if not 0.0 <= min_lr_ratio <= 1.0:
        raise ValueError(f"optim.min_lr_ratio must be in [0, 1], got {min_lr_ratio}")
    if schedule == "cosine" and total_steps <= 0:
        raise ValueError("optim.schedule=cosine needs trainer.max_steps > 0 (the length of the decay); "
                         "use optim.schedule=constant for open-ended runs")

    def f(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        if schedule == "constant":
            return 1.0
        span = max(total_steps - warmup_steps, 1)
        progress = min(max(step - warmup_steps, 0) / span, 1.0)
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return f
