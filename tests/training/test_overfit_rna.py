"""experiment=rna_cpu_small memorising one real RNA chain and sampling it back (slow)."""

from __future__ import annotations

import csv
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from train_testdata import compose_train_config

from flowbb.training.run import train

CHAIN_FILE = "medium__1XJR__A.pdb.gz"  # 46 nt, no chain break; 1024 // 46 = 22 copies per time batch
STEPS = 600


@pytest.fixture
def one_rna_processed(shared_data: Path, tmp_path: Path) -> Path:
    """A processed store holding only CHAIN_FILE."""
    from flowbb.data.preprocess import preprocess

    (tmp_path / "raw").mkdir()
    shutil.copy(shared_data / "rna" / CHAIN_FILE, tmp_path / "raw" / CHAIN_FILE)
    summary = preprocess(tmp_path / "raw", tmp_path / "processed", num_workers=0, progress=False)
    assert summary["chains_kept"] == 1
    return tmp_path / "processed"


@pytest.mark.slow
def test_rna_cpu_small_memorises_one_chain(one_rna_processed: Path, tmp_path: Path) -> None:
    """``experiment=rna_cpu_small`` as it is (model=small with the eight-pair torsion head, time batches of 1024
    tokens: 22 copies of the 46-nt chain per step, each with its own t and noise), warm-up shortened to 50 steps,
    through ``train`` for STEPS steps; then the sampler reads the chain back from the EMA weights of ``last.ckpt``:
    samples of its length have TM-score >= 0.7 to it on C4' (median of 4) and consecutive C4'-C4' distances of
    real RNA (mean within 5.5-6.8 Å). Measured (600 steps, 1 torch thread on one core of a busy 2-core machine):
    training 307 s, 311 s in all; loss (mean of 20 steps) 6.76 -> 0.78; TM-scores 0.80, 0.91, 0.93, 0.87; mean
    C4'-C4' 6.10-6.20 Å."""
    from flowbb.data.store import ProcessedStore
    from flowbb.eval.tm import tm_score
    from flowbb.inference.generate import generate_from_checkpoint

    t0 = time.perf_counter()
    run = tmp_path / "run"
    cfg = compose_train_config(run, [
        "experiment=rna_cpu_small", "logger=csv", f"data.processed_dir={one_rna_processed}",
        "data.loader.num_workers=0", "data.loader.persistent_workers=false", "data.split.num_val_chains=0",
        "data.clusters.enabled=false", f"trainer.max_steps={STEPS}", "trainer.log_every_n_steps=1",
        "trainer.enable_progress_bar=false", "optim.warmup_steps=50", "callbacks.validation.every_n_steps=0",
        "callbacks.validation.run_at_end=false", "callbacks.checkpoint.every_n_train_steps=0",
        "logger.csv.flush_logs_every_n_steps=100",
    ])
    result = train(cfg)
    assert result["global_step"] == STEPS and result["skipped_steps"] == 0
    with open(run / "metrics.csv") as f:
        rows = sorted((r for r in csv.DictReader(f) if r.get("train/loss_total")), key=lambda r: int(r["step"]))
    assert {float(r["train/batch_size"]) for r in rows} == {22.0}
    losses = [float(r["train/loss_total"]) for r in rows]
    train_seconds = time.perf_counter() - t0

    arrays = ProcessedStore(one_rna_processed).chain(0)
    chain_c4 = arrays["atoms"][arrays["atom_mask"][:, :3].all(1), 0].astype(np.float64)
    samples = generate_from_checkpoint(run / "checkpoints" / "last.ckpt", [len(chain_c4)], 4, tmp_path / "samples",
                                       seed=0, device="cpu")
    tms = [tm_score(s.atoms[:, 0], chain_c4) for s in samples]
    c4_c4 = [float(np.linalg.norm(np.diff(s.atoms[:, 0], axis=0), axis=-1).mean()) for s in samples]
    print(f"loss first 20 {np.mean(losses[:20]):.3f} last 20 {np.mean(losses[-20:]):.3f}; training {train_seconds:.0f} s, "
          f"total {time.perf_counter() - t0:.0f} s; TM-score (C4') {[round(t, 3) for t in tms]}, mean C4'-C4' "
          f"{[round(d, 2) for d in c4_c4]} Å")
    assert float(np.median(tms)) >= 0.7
    assert 5.5 <= float(np.mean(c4_c4)) <= 6.8
