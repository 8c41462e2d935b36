"""Generating backbones into PDB files (flowbb.inference.generate) and the sampler CLI (scripts/sample.py).

The checkpoint is the session fixture ``tiny_checkpoint`` (tests/conftest.py): a few real training steps of the tiny
model, written by Lightning with EMA weights and the training config, i.e. the format users load.
"""

from __future__ import annotations

import csv
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import biotite.structure.io.pdb as bpdb
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from flowbb.inference.checkpoint import LoadedCheckpoint, load_checkpoint
from flowbb.inference.generate import (
    CSV_COLUMNS,
    SamplingSettings,
    generate,
    plan_batches,
    prepare_out_dir,
    sample_batch,
    sample_seed,
    stack_atoms,
)

REPO = Path(__file__).resolve().parents[2]
STEPS = 5


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny model's tensors are small: one thread avoids OpenMP spinning on a busy shared CPU (10x faster)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def loaded(tiny_checkpoint: Path) -> LoadedCheckpoint:
    return load_checkpoint(tiny_checkpoint, device="cpu")


def _settings(**kw) -> SamplingSettings:
    return SamplingSettings(num_steps=kw.pop("num_steps", STEPS), **kw)


def _read_pdb(path: Path) -> tuple[np.ndarray, list]:
    """biotite: (coords [L, 4, 3] in N, CA, C, O order, residue records) of a single-model backbone PDB."""
    arr = bpdb.PDBFile.read(str(path)).get_structure(model=1)
    res_ids = sorted(set(arr.res_id.tolist()))
    coords = np.zeros((len(res_ids), 4, 3), dtype=np.float64)
    records = []
    for k, rid in enumerate(res_ids):
        res = arr[arr.res_id == rid]
        records.append((rid, set(res.res_name.tolist()), set(res.chain_id.tolist()), list(res.atom_name)))
        for a, name in enumerate(("N", "CA", "C", "O")):
            sel = res[res.atom_name == name]
            assert len(sel) == 1, f"{path} residue {rid}: {len(sel)} {name} atoms"
            coords[k, a] = sel.coord[0]
    return coords, records


# -- sampling ------------------------------------------------------------------------------------


def test_pdb_files_parse_back_to_sampler_coordinates(loaded: LoadedCheckpoint, tmp_path: Path):
    lengths, n = [12, 19], 2
    out = generate(loaded.model_fn, loaded.flow_cfg, lengths, n, tmp_path / "s", seed=3, settings=_settings(),
                   checkpoint=str(loaded.path), weights=loaded.weights)
    assert [(s.length, s.index) for s in out] == [(12, 0), (12, 1), (19, 0), (19, 1)]
    for length in lengths:
        seeds = [sample_seed(3, length, i) for i in range(n)]
        ref = sample_batch(loaded.model_fn, loaded.flow_cfg, length, seeds, _settings())["atoms"].double().numpy()
        for i in range(n):
            path = tmp_path / "s" / f"length_{length}" / f"sample_{i}.pdb"
            coords, records = _read_pdb(path)
            assert coords.shape == (length, 4, 3)
            np.testing.assert_allclose(coords, ref[i], atol=1e-3)
            assert [r[0] for r in records] == list(range(1, length + 1))  # sequential numbering
            for rid, names, chains, atom_names in records:
                assert names == {"GLY"} and chains == {"A"}
                assert sorted(atom_names) == sorted(["N", "CA", "C", "O"]), (rid, atom_names)
    ca = ref[0][:, 1]
    assert np.isfinite(ca).all() and np.abs(ca).max() > 1.0


def test_samples_csv(loaded: LoadedCheckpoint, tmp_path: Path):
    out = generate(loaded.model_fn, loaded.flow_cfg, [10, 14], 3, tmp_path, seed=11,
                   settings=_settings(max_tokens=28), checkpoint="ck.ckpt", weights="ema")
    with (tmp_path / "samples.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(out) == 6
    assert tuple(rows[0]) == CSV_COLUMNS
    for row, s in zip(rows, out, strict=True):
        assert Path(row["path"]) == s.path and s.path.is_file()
        assert int(row["seed"]) == sample_seed(11, s.length, s.index) == s.seed
        assert row["checkpoint"] == "ck.ckpt" and row["weights"] == "ema" and int(row["num_steps"]) == STEPS
        assert float(row["seconds"]) > 0 and float(row["noise_scale"]) == 0.0
    assert [int(r["batch_size"]) for r in rows] == [2, 2, 1, 2, 2, 1]  # 28 // 10 = 2, 28 // 14 = 2


def test_same_seed_identical_files_two_seeds_differ(loaded: LoadedCheckpoint, tmp_path: Path):
    runs = {}
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        generate(loaded.model_fn, loaded.flow_cfg, [16], 2, tmp_path / name, seed=seed, settings=_settings())
        runs[name] = [(tmp_path / name / "length_16" / f"sample_{i}.pdb").read_bytes() for i in range(2)]
    assert runs["a"] == runs["b"]
    for i in range(2):
        assert runs["a"][i] != runs["c"][i]
        a, _ = _read_pdb(tmp_path / "a" / "length_16" / f"sample_{i}.pdb")
        c, _ = _read_pdb(tmp_path / "c" / "length_16" / f"sample_{i}.pdb")
        assert np.sqrt(((a - c) ** 2).sum(-1).mean()) > 1.0  # different structures, not rounding noise
    a0, _ = _read_pdb(tmp_path / "a" / "length_16" / "sample_0.pdb")
    a1, _ = _read_pdb(tmp_path / "a" / "length_16" / "sample_1.pdb")
    assert np.abs(a0 - a1).max() > 1.0  # samples of one run differ


def test_noise_scale_zero_is_deterministic_and_noise_is_seeded(loaded: LoadedCheckpoint):
    seeds = [sample_seed(0, 14, i) for i in range(2)]
    ode = [sample_batch(loaded.model_fn, loaded.flow_cfg, 14, seeds, _settings(noise_scale=0.0))["atoms"]
           for _ in range(2)]
    assert torch.equal(ode[0], ode[1])
    sde = [sample_batch(loaded.model_fn, loaded.flow_cfg, 14, seeds, _settings(noise_scale=0.5))["atoms"]
           for _ in range(2)]
    assert torch.equal(sde[0], sde[1])
    assert (sde[0] - ode[0]).abs().max() > 1e-2


def test_clash_guidance_settings_resolve_and_reach_the_sampler(loaded: LoadedCheckpoint, tmp_path: Path):
    import dataclasses

    flow_cfg = dataclasses.replace(
        loaded.flow_cfg, sampler=dataclasses.replace(loaded.flow_cfg.sampler, clash_guidance=0.7,
                                                     clash_guidance_min_t=0.2))
    resolved = SamplingSettings().resolved(flow_cfg)
    assert (resolved.clash_guidance, resolved.clash_guidance_min_t) == (0.7, 0.2)  # the checkpoint's values
    over = SamplingSettings(clash_guidance=0.0, clash_guidance_min_t=0.9).resolved(flow_cfg)
    assert (over.clash_guidance, over.clash_guidance_min_t) == (0.0, 0.9)  # explicit settings win
    for bad in ({"clash_guidance": -0.5}, {"clash_guidance_min_t": 1.5}):
        with pytest.raises(ValueError, match="clash_guidance"):
            SamplingSettings(**bad).resolved(flow_cfg)
    seeds = [sample_seed(0, 24, i) for i in range(2)]
    plain = sample_batch(loaded.model_fn, loaded.flow_cfg, 24, seeds, _settings(clash_guidance=0.0))["atoms"]
    guided = sample_batch(loaded.model_fn, loaded.flow_cfg, 24, seeds, _settings(clash_guidance=1.0,
                                                                                  clash_guidance_min_t=0.0))["atoms"]
    assert not torch.equal(plain, guided)  # the tiny untrained model's predictions overlap: guidance moves them
    generate(loaded.model_fn, loaded.flow_cfg, [10], 1, tmp_path, settings=_settings(clash_guidance=0.5))
    with (tmp_path / "samples.csv").open() as fh:
        row = next(csv.DictReader(fh))
    assert float(row["clash_guidance"]) == 0.5 and float(row["clash_guidance_min_t"]) == 0.5


def test_samples_do_not_depend_on_batching(loaded: LoadedCheckpoint, tmp_path: Path):
    one = generate(loaded.model_fn, loaded.flow_cfg, [13], 3, tmp_path / "one", seed=2,
                   settings=_settings(max_tokens=13))
    three = generate(loaded.model_fn, loaded.flow_cfg, [20, 13], 3, tmp_path / "three", seed=2,
                     settings=_settings(max_tokens=1000))
    by_key = {(s.length, s.index): s for s in three}
    for s in one:
        other = by_key[(13, s.index)]
        assert s.seed == other.seed
        np.testing.assert_allclose(s.atoms, other.atoms, atol=1e-3)


def test_trajectories_have_num_steps_plus_one_models(loaded: LoadedCheckpoint, tmp_path: Path):
    out = generate(loaded.model_fn, loaded.flow_cfg, [11], 1, tmp_path, seed=0, settings=_settings(save_traj=True))
    s = out[0]
    for path in (s.traj_path, s.pred_traj_path):
        assert path is not None and path.is_file()
        pdb = bpdb.PDBFile.read(str(path))
        assert pdb.get_model_count() == STEPS + 1
        stack = pdb.get_structure()
        assert stack.stack_depth() == STEPS + 1 and stack.array_length() == 11 * 4
    last = bpdb.PDBFile.read(str(s.pred_traj_path)).get_structure(model=STEPS + 1)
    final, _ = _read_pdb(s.path)
    np.testing.assert_allclose(last.coord.reshape(11, 4, 3), final, atol=2e-3)
    first = bpdb.PDBFile.read(str(s.traj_path)).get_structure(model=1).coord.reshape(11, 4, 3)
    assert np.abs(first - final).max() > 1.0  # x_t starts at the prior, far from the sample


def test_out_dir_guard(loaded: LoadedCheckpoint, tmp_path: Path):
    generate(loaded.model_fn, loaded.flow_cfg, [9, 10], 1, tmp_path, settings=_settings(num_steps=1))
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="overwrite=true"):
        generate(loaded.model_fn, loaded.flow_cfg, [9], 1, tmp_path, settings=_settings(num_steps=1))
    generate(loaded.model_fn, loaded.flow_cfg, [9], 1, tmp_path, settings=_settings(num_steps=1), overwrite=True)
    assert not (tmp_path / "length_10").exists()  # the earlier run's samples are gone
    assert (tmp_path / "notes.txt").read_text() == "keep me"
    with pytest.raises(FileExistsError):
        prepare_out_dir(tmp_path / "notes.txt")


def test_plan_batches_token_budget_and_seeds():
    plan = plan_batches([100, 300, 100], 8, 1000)
    assert [(b.length, b.indices) for b in plan] == [
        (100, list(range(8))), (300, [0, 1, 2]), (300, [3, 4, 5]), (300, [6, 7])]
    assert [len(b.indices) for b in plan_batches([5000], 2, 1000)] == [1, 1]  # one chain even above the budget
    seeds = {sample_seed(s, n, i) for s in range(3) for n in (10, 11) for i in range(4)}
    assert len(seeds) == 24
    with pytest.raises(ValueError, match="lengths"):
        plan_batches([0], 1, 10)
    with pytest.raises(ValueError, match="samples_per_length"):
        plan_batches([10], 0, 10)


def test_stack_atoms_pads_with_zeros(loaded: LoadedCheckpoint, tmp_path: Path):
    out = generate(loaded.model_fn, loaded.flow_cfg, [6, 9], 1, tmp_path, settings=_settings(num_steps=1))
    atoms, mask = stack_atoms(out)
    assert atoms.shape == (2, 9, 4, 3) and mask.tolist() == [[1.0] * 6 + [0.0] * 3, [1.0] * 9]
    assert torch.equal(atoms[0, :6], torch.from_numpy(out[0].atoms)) and not atoms[0, 6:].any()
    assert torch.equal(atoms[1], torch.from_numpy(out[1].atoms))


# -- CLI -----------------------------------------------------------------------------------------


def _sample_script():
    spec = importlib.util.spec_from_file_location("flowbb_sample_script", REPO / "scripts" / "sample.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sample_cfg(overrides: list[str]):
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        return compose(config_name="sample", overrides=overrides)


def test_cli_writes_samples(tiny_checkpoint: Path, tmp_path: Path):
    """The real Hydra entry point in a subprocess (one thread: the tiny model runs faster so on a shared CPU)."""
    out = tmp_path / "cli"
    cmd = [sys.executable, str(REPO / "scripts" / "sample.py"), f"ckpt_path={tiny_checkpoint}", "lengths=[10,12]",
           "samples_per_length=2", f"out_dir={out}", "num_steps=2", "device=cpu", "progress=false"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300, env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for n in (10, 12):
        for i in range(2):
            assert (out / f"length_{n}" / f"sample_{i}.pdb").is_file()
    with (out / "samples.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4 and all(r["checkpoint"] == str(tiny_checkpoint) and r["weights"] == "ema" for r in rows)
    assert (out / "sample_config.yaml").is_file()
    assert "4 backbones" in proc.stderr
    assert not (tmp_path / "outputs").exists() and not (tmp_path / ".hydra").exists()  # no Hydra run folder


def test_cli_errors_are_one_clear_line(tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    script = _sample_script()
    out = tmp_path / "cli"
    base = [f"ckpt_path={tiny_checkpoint}", "lengths=[10]", "samples_per_length=1", f"out_dir={out}", "num_steps=1",
            "device=cpu", "progress=false"]
    assert script.run(_sample_cfg(base)) == 0
    capsys.readouterr()
    assert script.run(_sample_cfg(base)) == 2
    assert "not empty" in capsys.readouterr().err
    missing = tmp_path / "missing.ckpt"
    assert script.run(_sample_cfg([*base, f"ckpt_path={missing}", "overwrite=true"])) == 2
    err = capsys.readouterr().err
    assert f"cannot load flowbb checkpoint {missing}: no such file" in err and "Traceback" not in err
    assert script.run(_sample_cfg([*base[1:], "overwrite=true"])) == 2
    assert "ckpt_path is required" in capsys.readouterr().err
    assert script.run(_sample_cfg([*base, "lengths=[0]", "overwrite=true"])) == 2
    assert "lengths" in capsys.readouterr().err
