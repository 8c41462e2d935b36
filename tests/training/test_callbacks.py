"""The validation callback (:class:`flowbb.training.callbacks.SampleValidation`) on a real RNA run (the session
fixture ``rna_run``: 3 training steps of the tiny model with the RNA head, validation by sampling at the end): it
generates through the sampler's own function, so its files, seeds and coordinates are the sampler's."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import biotite.structure.io.pdb as bpdb
import numpy as np
from omegaconf import DictConfig, OmegaConf

from flowbb.inference.generate import CSV_NAME, SamplingSettings, generate_from_checkpoint, sample_seed
from flowbb.molecules import get_molecule


def _val_cfg(run: Path) -> DictConfig:
    """The run's ``callbacks.validation`` config (lengths, samples_per_length, num_steps, seed)."""
    return OmegaConf.load(run / "config_resolved.yaml").callbacks.validation


def _step_dir(run: Path) -> Path:
    dirs = sorted((run / "val_samples").glob("step_*"))
    assert len(dirs) == 1, dirs  # validated once, at the end of fit
    return dirs[0]


def test_validation_samples_rna(rna_run: Path) -> None:
    """The validation callback sampled through the RNA head, wrote 12-atom PDB files under the sampler's names and
    logged RNA geometry under the metric names it always had."""
    cfg = _val_cfg(rna_run)
    (length,) = cfg.lengths
    files = sorted(p.relative_to(_step_dir(rna_run)).as_posix() for p in _step_dir(rna_run).rglob("*.pdb"))
    assert files == [f"length_{length}/sample_0.pdb", f"length_{length}/sample_1.pdb"]
    arr = bpdb.PDBFile.read(str(_step_dir(rna_run) / files[0])).get_structure(model=1)
    first = arr[arr.res_id == arr.res_id[0]]
    assert arr.array_length() == length * 12 and set(arr.res_name.tolist()) == {"N"}
    assert list(first.atom_name) == list(get_molecule("rna").pdb_atom_names("N")[0]) and "N9" in first.atom_name
    with open(rna_run / "metrics.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("val/c4_c4_mean")]
    assert len(rows) == 1
    for key in ("c4_c4_mean", "c4_c4_deviation", "clashes", "rg", "rg_ratio", "bond_deviation", "angle_deviation",
                "o3p_mean", "sample_seconds"):
        assert math.isfinite(float(rows[0][f"val/{key}"])), key
    assert "val/helix_frac" not in rows[0] or not rows[0]["val/helix_frac"]


def test_validation_writes_what_the_sampler_writes(rna_run: Path, tmp_path: Path) -> None:
    """Validation's ``samples.csv`` holds the sampler's per-sample seeds, and ``generate_from_checkpoint`` with the
    run's validation settings on ``last.ckpt`` (the EMA weights validation used) gives the same backbones."""
    cfg = _val_cfg(rna_run)
    step_dir = _step_dir(rna_run)
    with (step_dir / CSV_NAME).open() as fh:
        rows = list(csv.DictReader(fh))
    expected = [(n, i, sample_seed(int(cfg.seed), n, i)) for n in cfg.lengths for i in range(cfg.samples_per_length)]
    assert [(int(r["length"]), int(r["sample_index"]), int(r["seed"])) for r in rows] == expected
    assert {r["weights"] for r in rows} == {"ema"} and {int(r["num_steps"]) for r in rows} == {cfg.num_steps}
    again = generate_from_checkpoint(rna_run / "checkpoints" / "last.ckpt", list(cfg.lengths),
                                     int(cfg.samples_per_length), tmp_path, seed=int(cfg.seed),
                                     settings=SamplingSettings(num_steps=cfg.num_steps), device="cpu")
    assert len(again) == len(rows)
    for s in again:
        val = bpdb.PDBFile.read(str(step_dir / s.path.relative_to(tmp_path))).get_structure(model=1)
        np.testing.assert_allclose(val.coord.reshape(s.atoms.shape), s.atoms, atol=2e-3)
