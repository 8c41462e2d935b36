"""flowbb.training: Lightning module, callbacks (EMA, step checkpoints, validation sampling), loggers, train()."""

from __future__ import annotations

from typing import Any


def train(cfg: Any) -> dict[str, Any]:
    """Train from a composed Hydra config; see :func:`flowbb.training.run.train`."""
    from flowbb.training.run import train as _train

    return _train(cfg)


__all__ = ["train"]
