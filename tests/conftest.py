"""Shared test set-up: two torch threads, paths to the real structures.

Real structures come from two places:

- ``../shared/data`` (``FLOWBB_SHARED_DATA`` overrides the path; point it at a missing folder to test a plain
  clone): hundreds of files. The ``shared_data`` fixture and those built on it (``ddg_files``, ``db55_files``)
  skip, with the reason, when it is absent.
- ``tests/resources`` (:data:`BUNDLED_DATA`): a few small files committed with the tests, in the same layout (see
  its README). The ``core_data`` fixture is ``../shared/data`` when present, else this folder, so the core tests
  (geometry and flow on real backbones, evaluation "samples", the tiny training checkpoint behind the inference
  and notebook tests) run on a plain clone too.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(int(os.environ.get("FLOWBB_TEST_THREADS", "2")))  # 1 beside a background run

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FLOWBB_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
#: small real structures committed with the tests: a subset of ../shared/data in the same layout
BUNDLED_DATA = REPO_ROOT / "tests" / "resources"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (read-only real structures); skips when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA} (FLOWBB_SHARED_DATA); tests on tests/resources still run")
    return SHARED_DATA


@pytest.fixture(scope="session")
def core_data() -> Path:
    """``../shared/data`` when present, else ``tests/resources`` (same layout, a few files: 7 small proteins under
    ``pdb/ddg``, one RNA chain under ``rna``). Read-only."""
    return SHARED_DATA if SHARED_DATA.is_dir() else BUNDLED_DATA


@pytest.fixture(scope="session")
def has_shared_data() -> bool:
    """True when ``../shared/data`` is present (``core_data`` is then the full set)."""
    return SHARED_DATA.is_dir()


@pytest.fixture(scope="session")
def core_ddg_files(core_data: Path) -> list[Path]:
    """Plain PDB files with full headers: the 50 of ``../shared/data/pdb/ddg``, or the 7 bundled ones."""
    return sorted((core_data / "pdb" / "ddg").glob("*.pdb"))


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
# Inference / notebook / validation tests: real flowbb checkpoints trained in seconds, through
# ``flowbb.training.train`` exactly as ``python train.py`` runs it (EMA weights and the resolved training config).
# ``tiny_checkpoint``: ``experiment=debug model=tiny`` (tiny FlashIPA model) for a few steps on six small single-chain
# ddg structures; used by tests/inference/ and tests/test_notebook.py. ``rna_run``: the tiny model with the RNA head
# (``experiment=rna_cpu_small``) on real RNA chains, validated by sampling at the end; used by
# tests/inference/test_generate_rna.py and tests/training/test_callbacks.py.
# ---------------------------------------------------------------------------------------------------------------

TINY_CKPT_FILES = ("1BPI.pdb", "1CSP.pdb", "1SHG.pdb", "1MSI.pdb", "1B5M.pdb", "2HPR.pdb")  # 57-87 residues
TINY_CKPT_STEPS = 4
# five real RNA chains of ../shared/data/rna (40-70 nt), those of tests/training's RNA set; the CASP chain R1107 is
# held out by data=rna's split
RNA_CKPT_FILES = ("grnade__RCSB__B.pdb.gz", "rna3dbench__6JQ5_clean_fixed__A.pdb.gz", "medium__1XJR__A.pdb.gz",
                  "medium__3D2V__A.pdb.gz", "medium__R1107__A.pdb.gz")
RNA_RUN_STEPS = 3
RNA_VAL_LENGTH = 12  # the RNA run's validation samples 2 chains of this length at the end of fit


def _train_tiny(root: Path, raw_files: list[Path], overrides: list[str]) -> dict:
    """Preprocess ``raw_files`` into ``root/processed`` and train ``configs/train.yaml`` with ``overrides`` in
    ``root/run`` on one thread (a tiny model: one thread is several times faster than two on a busy 2-core box)."""
    import shutil

    from hydra import compose, initialize_config_dir

    from flowbb.data.preprocess import preprocess
    from flowbb.training.run import train

    raw = root / "raw"
    raw.mkdir()
    for path in raw_files:
        shutil.copy(path, raw / path.name)
    processed = root / "processed"
    preprocess(raw, processed, num_workers=0, progress=False)
    base = [f"paths.root={REPO_ROOT}", f"paths.run_dir={root / 'run'}", f"data.processed_dir={processed}",
            "data.split.num_val_chains=0", "data.loader.num_workers=0", "data.batcher.max_tokens=256",
            "trainer.enable_progress_bar=false", "callbacks.ema.decay=0.5"]
    with initialize_config_dir(config_dir=str(REPO_ROOT / "configs"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[*base, *overrides])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train(cfg)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory, core_data: Path) -> Path:
    """``last.ckpt`` of a 4-step ``experiment=debug model=tiny`` run (EMA decay 0.5, so EMA and raw weights differ)."""
    files = [core_data / "pdb" / "ddg" / name for name in TINY_CKPT_FILES]
    summary = _train_tiny(tmp_path_factory.mktemp("tiny_ckpt"), files, [
        "experiment=debug", "model=tiny", "logger=none", "data=pdb", "data.filters.min_length=40",
        "data.filters.max_length=100", "data.filters.monomer_only=false", "data.filters.max_resolution=null",
        "data.filters.max_coil_frac=null", "data.filters.rg_factor=null", "data.clusters.enabled=false",
        "data.loader.persistent_workers=false", f"trainer.max_steps={TINY_CKPT_STEPS}",
        "callbacks.validation.every_n_steps=0", "callbacks.validation.run_at_end=false",
        "~callbacks.progress_bar", "~callbacks.lr_monitor",
    ])
    ckpt = Path(summary["last_checkpoint"])
    assert summary["global_step"] == TINY_CKPT_STEPS and ckpt.is_file(), summary
    return ckpt


@pytest.fixture(scope="session")
def rna_run(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    """Run folder of 3 training steps of the tiny model with the RNA head (CSV logger); validation samples 2 chains
    of ``RNA_VAL_LENGTH`` nt with 3 Euler steps at the end (``val_samples/``, ``metrics.csv``)."""
    root = tmp_path_factory.mktemp("rna_ckpt")
    summary = _train_tiny(root, [shared_data / "rna" / n for n in RNA_CKPT_FILES], [
        "experiment=rna_cpu_small", "model=tiny", "logger=csv", "trainer.log_every_n_steps=1",
        f"trainer.max_steps={RNA_RUN_STEPS}", "callbacks.validation.every_n_steps=0",
        "callbacks.validation.run_at_end=true", f"callbacks.validation.lengths=[{RNA_VAL_LENGTH}]",
        "callbacks.validation.samples_per_length=2", "callbacks.validation.num_steps=3",
        "callbacks.validation.log_structures=false",
    ])
    assert summary["global_step"] == RNA_RUN_STEPS, summary
    return root / "run"
