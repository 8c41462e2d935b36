"""A callback the DDP test adds through the config (``+callbacks.recorder._target_=ddp_recorder.BatchRecorder``):
each rank writes the metadata rows of its training batches and a checksum of its final weights to
``<out_dir>/rank<r>.json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch


class BatchRecorder(pl.Callback):
    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)
        self.rows: list[list[int]] = []

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self.rows.append([int(r) for r in batch["row"].tolist()])

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        with torch.no_grad():
            # ranks hold identical weights (and identical EMA averages) when gradients were all-reduced
            checksum = float(sum(p.double().sum() for p in pl_module.model.parameters()))
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps({
            "rank": trainer.global_rank, "world_size": trainer.world_size, "global_step": trainer.global_step,
            "rows": self.rows, "checksum": checksum,
            "backend": torch.distributed.get_backend() if torch.distributed.is_initialized() else None,
        }))
