"""RNA training end to end: experiment=rna_cpu_small for a few steps on a tiny processed set of real RNA chains
(../shared/data/rna) through flowbb.training.train, and the torsion-head check of the training module."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
from train_testdata import RNA_FILES, compose_train_config

from flowbb.inference.checkpoint import load_checkpoint
from flowbb.training.module import FlowModule
from flowbb.training.run import train

RNA_SMALL = ["experiment=rna_cpu_small", "logger=csv", "trainer.log_every_n_steps=1", "data.loader.num_workers=0",
             "data.split.num_val_chains=0", "data.batcher.max_tokens=512", "callbacks.validation.run_at_end=false"]


def test_rna_cpu_small_trains_and_checkpoints(rna_processed: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    cfg = compose_train_config(run, [*RNA_SMALL, f"data.processed_dir={rna_processed}", "trainer.max_steps=3"])
    assert cfg.model.num_torsions == 8 and cfg.flow.losses.aux_t_threshold == 0.25 and cfg.data.molecule == "rna"
    result = train(cfg)
    assert result["global_step"] == 3 and result["skipped_steps"] == 0
    with open(run / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/loss_total")]
    assert len(rows) == 3
    for row in rows:
        for key in ("trans", "rot", "bb_atom", "pair_dist", "torsion", "total"):
            assert math.isfinite(float(row[f"train/loss_{key}"])), key
    model = load_checkpoint(run / "checkpoints" / "last.ckpt", device="cpu").model
    assert model.cfg.num_torsions == 8 and model.psi_head.out.out_features == 16


def test_protein_torsion_head_refuses_rna_batches(rna_processed: Path, tmp_path: Path) -> None:
    import hydra

    cfg = compose_train_config(tmp_path / "run", [*RNA_SMALL, f"data.processed_dir={rna_processed}",
                                                   "model=tiny", "model.num_torsions=1"])
    dm = hydra.utils.instantiate(cfg.data, _convert_="all")
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["atoms"].shape[2] == 12 and set(dm.train_dataset.store.metadata.loc[dm.test_dataset.rows,
                                                                                     "source_file"]) == {RNA_FILES[-1]}
    module = FlowModule(cfg)
    with pytest.raises(ValueError, match="model.num_torsions=8"):
        module.compute_losses(batch, generator=torch.Generator().manual_seed(0))
