"""Training end to end on a small real set: resume, the non-finite guard, the CLI with offline W&B, 2-process DDP."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from train_testdata import REPO_ROOT, compose_train_config, small_data_overrides

from flowbb.training.ema import EMA
from flowbb.training.guard import NonFiniteGuard
from flowbb.training.module import GUARD_KEY, FlowModule
from flowbb.training.run import train

FAST = ["experiment=debug", "model=tiny", "logger=csv", "trainer.log_every_n_steps=1", "callbacks.validation.every_n_steps=0",
        "callbacks.validation.run_at_end=false", "data.batcher.max_tokens=1024"]


def _ckpt(path: Path) -> dict:
    """A checkpoint written by training; it must load with the safe (weights-only) unpickler."""
    return torch.load(path, map_location="cpu", weights_only=True)


def test_resume_continues_global_step(small_processed: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    base = [*FAST, *small_data_overrides(small_processed), "callbacks.checkpoint.every_n_train_steps=2"]
    first = train(compose_train_config(run, [*base, "trainer.max_steps=3"]))
    assert first["global_step"] == 3 and first["resumed_from"] is None
    ckpt = _ckpt(run / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] == 3 and ckpt["ema_num_updates"] == 3
    assert (run / "checkpoints" / "step_0000002.ckpt").is_file()

    second = train(compose_train_config(run, [*base, "trainer.max_steps=5"]))
    assert second["resumed_from"] == str(run / "checkpoints" / "last.ckpt")
    assert second["global_step"] == 5
    ckpt = _ckpt(run / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] == 5 and ckpt["ema_num_updates"] == 5
    assert ckpt[GUARD_KEY] == {"skipped_loss": 0, "skipped_grad": 0, "consecutive": 0}
    # one metrics.csv across both launches, steps continuing
    import csv

    with open(run / "metrics.csv") as f:
        steps = sorted({int(r["step"]) for r in csv.DictReader(f) if r.get("train/loss_total")})
    assert steps[0] <= 1 and steps[-1] >= 3 and len(steps) >= 4
    assert (run / "config_resolved.yaml").is_file()


def _real_batches(cfg, n: int) -> list[dict]:
    import hydra

    dm = hydra.utils.instantiate(cfg.data, _convert_="all")
    dm.setup("fit")
    batches = []
    for batch in dm.train_dataloader():
        batches.append(batch)
        if len(batches) == n:
            return batches
    raise AssertionError("small set gave too few batches")


def test_nonfinite_loss_and_grads_skipped_and_counted(small_processed: Path, tmp_path: Path) -> None:
    cfg = compose_train_config(tmp_path / "run", [*FAST, *small_data_overrides(small_processed),
                                                  "data.batcher.max_tokens=400"])
    pl.seed_everything(0)
    batches = _real_batches(cfg, 4)
    bad = {k: v.clone() for k, v in batches[1].items()}
    bad["atoms"][0, 0, 0, 0] = math.nan  # one corrupt coordinate -> non-finite loss
    module = FlowModule(cfg)
    # a gradient hook turns the gradients of the 4th batch (3rd update attempt) into inf
    calls = {"n": 0}
    param = next(module.model.parameters())

    def poison(grad: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        return grad * math.inf if calls["n"] == 3 else grad

    param.register_hook(poison)
    trainer = pl.Trainer(accelerator="cpu", max_steps=10, max_epochs=1, logger=False, enable_progress_bar=False,
                         enable_checkpointing=False, limit_val_batches=0, callbacks=[EMA(decay=0.9)],
                         use_distributed_sampler=False)
    loader = torch.utils.data.DataLoader([batches[0], bad, batches[2], batches[3], batches[0]], batch_size=None)
    trainer.fit(module, train_dataloaders=loader)
    assert module.guard.skipped_loss == 1 and module.guard.skipped_grad == 1
    assert trainer.global_step == 3  # 5 batches, 2 skipped
    assert all(torch.isfinite(p).all() for p in module.model.parameters())
    path = tmp_path / "guard.ckpt"
    trainer.save_checkpoint(path)
    assert _ckpt(path)[GUARD_KEY]["skipped_loss"] == 1 and _ckpt(path)[GUARD_KEY]["skipped_grad"] == 1
    restored = NonFiniteGuard()
    restored.load_state_dict(_ckpt(path)[GUARD_KEY])
    assert restored.skipped == 2


def test_step_cost_note_measures_real_steps(small_processed: Path, tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    """The CPU note of trainer=auto: measured seconds per step, the time max_steps would take, the CPU recipe."""
    from flowbb.training.callbacks import StepCostNote

    cfg = compose_train_config(tmp_path / "run", [*FAST, *small_data_overrides(small_processed)])
    batches = _real_batches(cfg, 4)
    module = FlowModule(cfg)
    note = StepCostNote(num_params=17_000_000, max_steps=1000, warmup=1, measure=2)
    trainer = pl.Trainer(accelerator="cpu", max_steps=4, max_epochs=1, logger=False, enable_progress_bar=False,
                         enable_checkpointing=False, limit_val_batches=0, callbacks=[note],
                         use_distributed_sampler=False)
    with caplog.at_level("WARNING", logger="flowbb.training.callbacks"):
        trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader(batches, batch_size=None))
    assert note.seconds_per_step is not None and note.seconds_per_step > 0
    lines = [r.getMessage() for r in caplog.records if "on CPU" in r.getMessage()]
    assert len(lines) == 1 and "17.0M-parameter model" in lines[0] and "experiment=cpu_small" in lines[0]
    assert f"{note.seconds_per_step:.1f} s per step" in lines[0] and "steps left would take" in lines[0]


def _run_cli(args: list[str], cwd: Path, env_extra: dict[str, str] | None = None, timeout: int = 600
             ) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update({"FLOWBB_ROOT": str(REPO_ROOT), "OMP_NUM_THREADS": "1", **(env_extra or {})})
    return subprocess.run([sys.executable, str(REPO_ROOT / "train.py"), *args], check=False, cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _tree_hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (relative path -> hex digest)."""
    import hashlib

    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_cli_run_dir_contents_and_resume(small_processed: Path, tmp_path: Path) -> None:
    run = tmp_path / "cli_run"
    args = ["experiment=debug", "model=tiny", *small_data_overrides(small_processed), "data.batcher.max_tokens=1024",
            f"hydra.run.dir={run}", "callbacks.validation.every_n_steps=2", "callbacks.validation.lengths=[24]",
            "callbacks.validation.samples_per_length=1", "callbacks.validation.num_steps=3"]
    netrc = tmp_path / "no_netrc"  # no key anywhere: W&B must go offline by itself
    proc = _run_cli([*args, "trainer.max_steps=2"], tmp_path, {"NETRC": str(netrc), "HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert (run / "config_resolved.yaml").is_file() and (run / ".hydra" / "overrides.yaml").is_file()
    assert (run / "metrics.csv").is_file() and (run / "train.log").is_file()
    offline = list((run / "wandb").glob("offline-run-*"))
    assert offline, sorted(p.name for p in run.iterdir())
    assert list((run / "val_samples" / "step_0000002").glob("length_*/sample_*.pdb"))
    assert _ckpt(run / "checkpoints" / "last.ckpt")["global_step"] == 2

    # refused relaunches (another model; max_steps below the run's step): one line, exit 2, folder byte-identical
    before = _tree_hashes(run)
    env = {"NETRC": str(netrc), "HOME": str(tmp_path)}
    for extra, expected in ((["model=small", "trainer.max_steps=4"], "holds a checkpoint of another model"),
                            (["trainer.max_steps=1"], "is at step 2, beyond trainer.max_steps=1")):
        proc = _run_cli([*args, *extra], tmp_path, env)
        assert proc.returncode == 2, proc.stderr[-3000:]
        assert proc.stderr.strip().splitlines()[-1].startswith("error: ") and expected in proc.stderr
        assert "Traceback" not in proc.stderr
        assert _tree_hashes(run) == before

    proc = _run_cli([*args, "trainer.max_steps=4"], tmp_path, {"NETRC": str(netrc), "HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resuming from" in (run / "train.log").read_text()
    assert _ckpt(run / "checkpoints" / "last.ckpt")["global_step"] == 4


def test_ddp_two_cpu_processes_disjoint_batches(small_processed: Path, tmp_path: Path, has_shared_data: bool) -> None:
    if not has_shared_data:  # 7 bundled chains: an epoch ends within the 3 steps, so rows repeat across ranks
        pytest.skip("needs the 20 chains of ../shared/data (the bundled set ends an epoch within 3 steps per rank)")
    run = tmp_path / "ddp_run"
    rec = tmp_path / "rec"
    args = ["experiment=debug", "model=tiny", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
            "trainer.precision=32-true", "trainer.max_steps=3", "logger=csv", *small_data_overrides(small_processed),
            "data.batcher.max_tokens=512", "callbacks.validation.every_n_steps=0",
            "callbacks.validation.run_at_end=false", f"hydra.run.dir={run}",
            "+callbacks.recorder._target_=ddp_recorder.BatchRecorder", f"+callbacks.recorder.out_dir={rec}"]
    env = {"PYTHONPATH": str(Path(__file__).parent) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = _run_cli(args, tmp_path, env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0 = json.loads((rec / "rank0.json").read_text())
    r1 = json.loads((rec / "rank1.json").read_text())
    assert r0["world_size"] == r1["world_size"] == 2 and r0["backend"] == "gloo"
    assert r0["global_step"] == r1["global_step"] == 3
    rows0 = {row for batch in r0["rows"] for row in batch}
    rows1 = {row for batch in r1["rows"] for row in batch}
    assert rows0 and rows1 and not rows0 & rows1  # disjoint batches per rank
    assert r0["checksum"] == pytest.approx(r1["checksum"], rel=1e-9, abs=1e-9)  # weights stay in sync
    assert _ckpt(run / "checkpoints" / "last.ckpt")["global_step"] == 3


@pytest.mark.slow
def test_cli_user_error_is_one_line_and_a_bug_keeps_its_traceback(small_processed: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    base = ["experiment=debug", "model=tiny", "logger=csv", *small_data_overrides(small_processed), f"hydra.run.dir={run}"]
    proc = _run_cli([*base, "trainer.max_step=3"], tmp_path)  # a mistyped key: refused before Hydra runs
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [("error: unknown config key trainer.max_step (did you mean "
                                                "trainer.max_steps?): check its spelling (`--cfg job` prints the "
                                                "config), or add a new key with +trainer.max_step=3")]
    assert not run.exists()
    # an exception that is not a UserError (here a callback that fails when training starts) keeps its traceback
    (tmp_path / "buggy_callback.py").write_text(
        "import lightning.pytorch as pl\n\n\nclass Buggy(pl.Callback):\n"
        "    def on_train_start(self, trainer, pl_module):\n        raise RuntimeError('a bug, not a user error')\n")
    proc = _run_cli([*base, "trainer.max_steps=1", "+callbacks.boom._target_=buggy_callback.Buggy"], tmp_path,
                    {"PYTHONPATH": str(tmp_path) + os.pathsep + os.environ.get("PYTHONPATH", "")})
    assert proc.returncode not in (0, 2) and "Traceback" in proc.stderr
    assert "RuntimeError: a bug, not a user error" in proc.stderr
