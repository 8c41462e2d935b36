"""The debug experiment fitting one real chain on CPU: one fixed noisy input (fast, tiny model), all noises and
times (slow, the experiment as it is)."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
import torch
from train_testdata import compose_train_config, small_data_overrides

from flowbb.training.run import train

CHAIN_FILE = "107L.pdb"  # T4 lysozyme, one chain of 162 residues


@pytest.fixture
def one_thread():
    """One torch thread for the tiny model on one fixed input: it gains nothing from more, and on a shared
    machine two OpenMP threads competing for busy cores make each step many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def one_chain_processed(shared_data: Path, tmp_path: Path) -> Path:
    """A processed store holding only CHAIN_FILE."""
    from flowbb.data.preprocess import preprocess

    raw = tmp_path / "raw"
    raw.mkdir()
    shutil.copy(shared_data / "pdb" / "ddg" / CHAIN_FILE, raw / CHAIN_FILE)
    summary = preprocess(raw, tmp_path / "processed", num_workers=0, progress=False)
    assert summary["chains_kept"] == 1
    return tmp_path / "processed"


@pytest.mark.slow
def test_debug_overfits_one_chain(one_chain_processed: Path, tmp_path: Path) -> None:
    """``experiment=debug`` as it is (model=small, time batches of ~1k tokens: 6 copies of the chain per step,
    each with its own t and noise) through ``train``: after 500 steps the mean total loss of the last 20 steps
    is at most 30% of the first 20. The loss is over random t, so it has a floor (at t near 0 the chain's pose
    cannot be read from the noise); fitting the rest needs the chain memorised in a pose-aware way, rotations
    included. Runs with the suite's 2 torch threads (tests/conftest.py)."""
    run = tmp_path / "run"
    cfg = compose_train_config(run, [
        "experiment=debug", "logger=csv", *small_data_overrides(one_chain_processed),
        "trainer.max_steps=500", "trainer.log_every_n_steps=1", "trainer.enable_progress_bar=false",
        "callbacks.validation.every_n_steps=0", "callbacks.validation.run_at_end=false",
        "callbacks.checkpoint.every_n_train_steps=0", "logger.csv.flush_logs_every_n_steps=100",
    ])
    result = train(cfg)
    assert result["global_step"] == 500 and result["skipped_steps"] == 0
    with open(run / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/loss_total")]
    rows = sorted(rows, key=lambda r: int(r["step"]))
    losses = [float(r["train/loss_total"]) for r in rows]
    assert len(losses) == 500
    assert {float(r["train/batch_size"]) for r in rows} == {6.0}  # 1024 // 162 copies of the chain per step
    first, last = sum(losses[:20]) / 20, sum(losses[-20:]) / 20
    terms = {k: (sum(float(r[f"train/loss_{k}"]) for r in rows[:20]) / 20,
                 sum(float(r[f"train/loss_{k}"]) for r in rows[-20:]) / 20) for k in ("trans", "rot", "bb_atom", "pair_dist")}
    print(f"mean total loss: first 20 steps {first:.3f}, last 20 steps {last:.3f} (ratio {last / first:.3f}); "
          + ", ".join(f"{k} {a:.3f} -> {b:.3f}" for k, (a, b) in terms.items()))
    assert last <= 0.3 * first


def test_debug_model_fits_one_fixed_noisy_input(one_chain_processed: Path, tmp_path: Path, one_thread: None) -> None:
    """Model, corruption and losses chained together can drive the loss of one fixed (noise, t) input of one
    real chain to near zero: every term's gradient reaches the parameters with the right sign. (Fitting all
    noises and times of a chain is the slow test above.)"""
    import hydra

    from flowbb.training.module import FlowModule

    cfg = compose_train_config(tmp_path / "run", ["experiment=debug", "model=tiny", "data.batcher.mode=length",
                                                  *small_data_overrides(one_chain_processed)])
    datamodule = hydra.utils.instantiate(cfg.data, _convert_="all")
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    torch.manual_seed(0)
    module = FlowModule(cfg)
    opt = torch.optim.Adam(module.parameters(), lr=1e-3)
    history = []
    for _ in range(250):  # the same prior draw and t at every step
        losses, _, _ = module.compute_losses(batch, self_condition=False, generator=torch.Generator().manual_seed(7),
                                             t=torch.tensor([0.7]))
        opt.zero_grad()
        losses["total"].backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
        opt.step()
        history.append({k: float(v) for k, v in losses.items()})
    first, last = history[0], history[-10:]
    for key in ("total", "trans", "rot", "bb_atom", "pair_dist"):
        final = sum(h[key] for h in last) / len(last)
        assert final <= 0.05 * first[key], (key, first[key], final)
