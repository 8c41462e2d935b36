"""Shared test set-up: two torch threads, paths to the shared real structures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(int(os.environ.get("FLOWBB_TEST_THREADS", "2")))  # 1 beside a background run

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FLOWBB_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (read-only real structures); skips when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def ddg_files(shared_data: Path) -> list[Path]:
    """The 50 plain PDB files with full headers in ``../shared/data/pdb/ddg``."""
    return sorted((shared_data / "pdb" / "ddg").glob("*.pdb"))


@pytest.fixture(scope="session")
def db55_files(shared_data: Path) -> list[Path]:
    """The 542 gzipped PDB files of Docking Benchmark 5.5."""
    return sorted((shared_data / "pdb" / "db55").glob("*.pdb.gz"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``gpu``-marked tests cleanly when CUDA is not available."""
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


# ---------------------------------------------------------------------------------------------------------------
# Sampling / notebook tests (owner: sampler helper): a real flowbb checkpoint trained in seconds.
# ``experiment=debug model=tiny`` (tiny FlashIPA model) for a few steps on a processed store of six small single-chain ddg
# structures, through ``flowbb.training.train`` exactly as ``python train.py`` runs it: the checkpoint holds EMA
# weights and the resolved training config. Used by tests/training/test_sampling.py and tests/test_notebook.py.
# ---------------------------------------------------------------------------------------------------------------

TINY_CKPT_FILES = ("1BPI.pdb", "1CSP.pdb", "1SHG.pdb", "1MSI.pdb", "1B5M.pdb", "2HPR.pdb")  # 57-87 residues
TINY_CKPT_STEPS = 4


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    """``last.ckpt`` of a 4-step ``experiment=debug model=tiny`` run (EMA decay 0.5, so EMA and raw weights differ)."""
    import shutil

    from hydra import compose, initialize_config_dir

    from flowbb.data.preprocess import preprocess
    from flowbb.training.run import train

    root = tmp_path_factory.mktemp("tiny_ckpt")
    raw = root / "raw"
    raw.mkdir()
    for name in TINY_CKPT_FILES:
        shutil.copy(shared_data / "pdb" / "ddg" / name, raw / name)
    processed = root / "processed"
    preprocess(raw, processed, num_workers=0, progress=False)
    run_dir = root / "run"
    overrides = [
        f"paths.root={REPO_ROOT}", f"paths.run_dir={run_dir}", "experiment=debug", "model=tiny", "logger=none",
        "data=pdb", f"data.processed_dir={processed}", "data.filters.min_length=40", "data.filters.max_length=100",
        "data.filters.monomer_only=false", "data.filters.max_resolution=null", "data.filters.max_coil_frac=null",
        "data.filters.rg_factor=null", "data.clusters.enabled=false", "data.split.num_val_chains=0",
        "data.loader.num_workers=0", "data.loader.persistent_workers=false", "data.batcher.max_tokens=256",
        f"trainer.max_steps={TINY_CKPT_STEPS}", "trainer.enable_progress_bar=false", "callbacks.ema.decay=0.5",
        "callbacks.validation.every_n_steps=0", "callbacks.validation.run_at_end=false",
        "~callbacks.progress_bar", "~callbacks.lr_monitor",
    ]
    with initialize_config_dir(config_dir=str(REPO_ROOT / "configs"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: one thread is several times faster than two on a busy 2-core box
    try:
        summary = train(cfg)
    finally:
        torch.set_num_threads(threads)
    ckpt = Path(summary["last_checkpoint"])
    assert summary["global_step"] == TINY_CKPT_STEPS and ckpt.is_file(), summary
    return ckpt
