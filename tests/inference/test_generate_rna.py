"""Generating RNA backbones: the sampler, ``generate``, ``scripts/sample.py`` on a real RNA checkpoint (the session
fixture ``rna_run``: ``experiment=rna_cpu_small model=tiny``, 3 steps on real chains of ../shared/data/rna), and
protein checkpoints named as such by the same config key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import biotite.structure.io.pdb as bpdb
import numpy as np
import pytest
import torch

from flowbb.geometry import rna
from flowbb.inference.checkpoint import LoadedCheckpoint, load_checkpoint
from flowbb.inference.generate import SamplingSettings, generate_from_checkpoint, sample_batch
from flowbb.molecules import get_molecule

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def loaded(rna_run: Path) -> LoadedCheckpoint:
    return load_checkpoint(rna_run / "checkpoints" / "last.ckpt", device="cpu")


def _read_pdb(path: Path) -> tuple[np.ndarray, list[str], list[list[str]]]:
    """(coords [L, 12, 3], residue names, atom names per residue) of a single-model RNA PDB file (biotite)."""
    arr = bpdb.PDBFile.read(str(path)).get_structure(model=1)
    res_ids = sorted(set(arr.res_id.tolist()))
    coords, names, atom_names = np.zeros((len(res_ids), 12, 3)), [], []
    for k, rid in enumerate(res_ids):
        res = arr[arr.res_id == rid]
        coords[k] = res.coord
        names.append(str(res.res_name[0]))
        atom_names.append([str(a) for a in res.atom_name])
    return coords, names, atom_names


def test_checkpoint_says_rna(loaded: LoadedCheckpoint, tiny_checkpoint: Path) -> None:
    assert loaded.molecule is get_molecule("rna") and loaded.cfg.data.molecule == "rna"
    assert load_checkpoint(tiny_checkpoint, device="cpu").molecule is get_molecule("protein")  # data=pdb: no key


def test_sample_batch_rebuilds_rna_atoms(loaded: LoadedCheckpoint) -> None:
    """The sampler carries the eight torsions and rebuilds the 12 atoms from the final frames and torsions;
    trajectories hold num_steps + 1 frames, rebuilt the same way."""
    settings = SamplingSettings(num_steps=3, save_traj=True)
    res = sample_batch(loaded.model_fn, loaded.flow_cfg, 10, [1, 2], settings, molecule=loaded.molecule)
    assert res["torsions"].shape == (2, 10, 8, 2) and "psi" not in res
    assert torch.allclose(res["torsions"].norm(dim=-1), torch.ones(2, 10, 8), atol=1e-5)
    expected = rna.atoms_from_frames(res["rots"], res["trans"], res["torsions"])
    assert torch.equal(res["atoms"], expected)
    assert res["traj_atoms"].shape == (4, 2, 10, 12, 3) and res["clean_traj_torsions"].shape == (4, 2, 10, 8, 2)
    assert torch.equal(res["clean_traj_atoms"][-1], res["atoms"])


def test_generate_writes_rna_pdb_files(loaded: LoadedCheckpoint, tmp_path: Path) -> None:
    """Any length (1 to 40 nt) as PDB files that read back to the sampled coordinates (1e-3 Å), the base atom
    named by the chosen nucleotide; the same seed gives the same files."""
    settings = SamplingSettings(num_steps=3, save_traj=True)
    samples = generate_from_checkpoint(loaded.path, [1, 9, 40], 2, tmp_path / "a", settings=settings, device="cpu",
                                       residue_name="C")
    assert len(samples) == 6
    for s in samples:
        coords, names, atom_names = _read_pdb(s.path)
        assert s.atoms.shape == (s.length, 12, 3) and np.isfinite(s.atoms).all()
        assert np.abs(coords - s.atoms).max() < 1e-3
        assert set(names) == {"C"} and atom_names[0][rna.ATOM_INDEX["N"]] == "N1"
        assert bpdb.PDBFile.read(str(s.traj_path)).get_model_count() == 4
    again = generate_from_checkpoint(loaded.path, [9], 2, tmp_path / "b", settings=settings, device="cpu",
                                     residue_name="C")
    assert again[0].path.read_bytes() == samples[2].path.read_bytes()
    with pytest.raises(ValueError, match="A, C, G, U"):
        generate_from_checkpoint(loaded.path, [5], 1, tmp_path / "c", settings=settings, device="cpu",
                                 residue_name="X")


def test_cli_samples_an_rna_checkpoint(loaded: LoadedCheckpoint, tmp_path: Path) -> None:
    out = tmp_path / "cli"
    cmd = [sys.executable, str(REPO / "scripts" / "sample.py"), f"ckpt_path={loaded.path}", "lengths=[15]",
           "samples_per_length=2", f"out_dir={out}", "num_steps=2", "device=cpu", "progress=false", "estimate=false",
           "residue_name=G"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300, env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert ", rna)" in proc.stderr
    coords, names, atom_names = _read_pdb(out / "length_15" / "sample_1.pdb")
    assert coords.shape == (15, 12, 3) and set(names) == {"G"} and atom_names[3][rna.ATOM_INDEX["N"]] == "N9"
