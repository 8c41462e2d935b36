"""flowbb.training: Lightning module, callbacks (EMA, step checkpoints, validation sampling), loggers, train()."""

from flowbb.training.run import train

__all__ = ["train"]
