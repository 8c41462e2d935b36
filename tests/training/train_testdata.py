"""Helpers for the training tests: configs composed as train.py would, overrides for the small real set."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO_ROOT / "configs"
# five real RNA chains of ../shared/data/rna (40-70 nt); the CASP chain R1107 is held out by data=rna's split
RNA_FILES = [
    "grnade__RCSB__B.pdb.gz",
    "rna3dbench__6JQ5_clean_fixed__A.pdb.gz",
    "medium__1XJR__A.pdb.gz",
    "medium__3D2V__A.pdb.gz",
    "medium__R1107__A.pdb.gz",  # CASP: held out
]


def compose_train_config(run_dir: Path, overrides: list[str]) -> DictConfig:
    """``configs/train.yaml`` composed as ``train.py`` would, with the run dir and repo root set explicitly
    (outside a Hydra run there is no ``hydra:runtime``)."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="train",
                       overrides=[f"paths.root={REPO_ROOT}", f"paths.run_dir={run_dir}", *overrides])


def small_data_overrides(processed: Path) -> list[str]:
    """Train on the small processed set: every chain in training, CPU-sized batches, no workers."""
    return ["data=pdb", f"data.processed_dir={processed}", "data.filters.monomer_only=false",
            "data.filters.max_resolution=null", "data.filters.max_coil_frac=null", "data.filters.rg_factor=null",
            "data.split.num_val_chains=0", "data.loader.num_workers=0", "data.loader.persistent_workers=false"]
