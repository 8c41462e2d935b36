"""Launch checks before anything is written (issue 14, item 2): another model in the run folder, max_steps below the
run's step, a missing ckpt_path. The byte-for-byte check of a refused CLI relaunch is in test_train.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from train_testdata import compose_train_config

from flowbb.errors import UserError
from flowbb.training.preflight import LAST_CKPT, model_mismatch, plan_resume

BASE = ["experiment=debug", "model=tiny", "logger=none"]


@pytest.fixture()
def run_dir(tiny_checkpoint: Path, tmp_path: Path) -> Path:
    """A run folder whose last.ckpt is the tiny model's (a few real training steps)."""
    run = tmp_path / "run"
    (run / LAST_CKPT).parent.mkdir(parents=True)
    shutil.copy(tiny_checkpoint, run / LAST_CKPT)
    return run


def test_same_model_resumes(run_dir: Path) -> None:
    plan = plan_resume(compose_train_config(run_dir, [*BASE, "trainer.max_steps=100"]), run_dir)
    assert plan.ckpt == str(run_dir / LAST_CKPT) and plan.in_run_dir and plan.step > 0


def test_fresh_run_dir_has_no_checkpoint(tmp_path: Path) -> None:
    assert plan_resume(compose_train_config(tmp_path / "new", BASE), tmp_path / "new").ckpt is None


def test_another_model_is_refused_with_the_ways_out(run_dir: Path) -> None:
    for overrides in (["model=small"], ["model.c_s=48"]):
        with pytest.raises(UserError) as info:
            plan_resume(compose_train_config(run_dir, [*BASE, *overrides]), run_dir)
        msg = str(info.value)
        assert "\n" not in msg and f"run folder {run_dir} holds a checkpoint of another model" in msg
        assert "model.c_s: 32 in the checkpoint" in msg
        for way_out in ("name=", "hydra.run.dir=", f"ckpt_path={run_dir / LAST_CKPT}"):
            assert way_out in msg


def test_max_steps_below_the_run_step_is_refused(run_dir: Path) -> None:
    step = int(torch.load(run_dir / LAST_CKPT, weights_only=True)["global_step"])
    with pytest.raises(UserError, match=f"is at step {step}, beyond trainer.max_steps={step - 1}"):
        plan_resume(compose_train_config(run_dir, [*BASE, f"trainer.max_steps={step - 1}"]), run_dir)
    assert plan_resume(compose_train_config(run_dir, [*BASE, f"trainer.max_steps={step}"]), run_dir).step == step


def test_missing_ckpt_path_is_a_user_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.ckpt"
    with pytest.raises(UserError, match=f"ckpt_path={missing}: no checkpoint file there"):
        plan_resume(compose_train_config(tmp_path / "run", [*BASE, f"ckpt_path={missing}"]), tmp_path / "run")


def test_keys_on_one_side_only_are_judged_by_the_weights(tiny_checkpoint: Path) -> None:
    """A checkpoint of an older flowbb lacks keys the new config has: accepted when the weights fit, not otherwise."""
    ckpt = torch.load(tiny_checkpoint, weights_only=True)
    stored = dict(ckpt["hyper_parameters"]["cfg"]["model"])
    new = dict(stored)
    stored.pop("knn_chunk")  # a key that changes no weight
    assert model_mismatch(stored, new, ckpt["state_dict"]) is None
    stored = dict(new)
    stored.pop("c_skip")
    new["c_skip"] = new["c_skip"] * 2  # a key only the new config has, with a value that changes the weights
    why = model_mismatch(stored, new, ckpt["state_dict"])
    assert why is not None and "other shapes" in why


# -- item 1: user errors as one line, checked before anything is built -------------------------------------------


def test_command_line_errors_are_one_line() -> None:
    from flowbb.cli import check_command_line

    cases = [
        ("train", ["trainer.max_step=5"], "unknown config key trainer.max_step (did you mean trainer.max_steps?)"),
        ("train", ["model=huge"], "model=huge: no such option; choose one of flash, ipa, small, tiny"),
        ("train", ["max_steps"], "cannot parse the command-line override 'max_steps'"),
        ("sample", ["lengths=[10]"], "ckpt_path is required: add ckpt_path=<value>"),
        ("preprocess", ["raw_dir=x"], "out_dir is required"),
    ]
    for name, overrides, expected in cases:
        with pytest.raises(UserError) as info:
            check_command_line(name, overrides)
        assert expected in str(info.value) and "\n" not in str(info.value), (overrides, str(info.value))
    check_command_line("train", ["experiment=debug", "hydra.run.dir=/tmp/x", "trainer.max_steps=3"])  # valid


def test_launch_checks_types_precision_and_cuda(tmp_path: Path) -> None:
    from flowbb.training.preflight import check_launch

    for overrides, expected in ((["trainer.max_steps=five"], "trainer.max_steps=five: expected a whole number"),
                                (["optim.lr=fast"], "optim.lr=fast: expected a number"),
                                (["trainer.precision=16-mixed"], "float16 needs loss scaling")):
        with pytest.raises(UserError, match=expected):
            check_launch(compose_train_config(tmp_path, [*BASE, *overrides]))
    gpu = compose_train_config(tmp_path, [*BASE, "trainer=gpu"])
    if torch.cuda.is_available():
        check_launch(gpu)
    else:
        with pytest.raises(UserError, match="no CUDA GPU is available here.*trainer=cpu"):
            check_launch(gpu)


def test_data_errors_before_the_model(small_processed: Path, tmp_path: Path) -> None:
    import hydra
    from train_testdata import small_data_overrides

    from flowbb.data.store import DatasetError

    def datamodule(processed: Path, *extra: str):
        cfg = compose_train_config(tmp_path, [*BASE, *small_data_overrides(processed), *extra])
        return hydra.utils.instantiate(cfg.data, _convert_="all")

    datamodule(small_processed).check_data()  # the real set passes
    (tmp_path / "empty").mkdir()
    (tmp_path / "half" / "shards").mkdir(parents=True)  # an interrupted preprocessing run
    for folder, expected in ((tmp_path / "nope", "does not exist: create it with `python scripts/preprocess.py"),
                             (tmp_path / "empty", "is not a processed dataset"),
                             (tmp_path / "half", "is incomplete (preprocessing did not finish")):
        with pytest.raises(DatasetError) as info:
            datamodule(folder).check_data()
        assert expected in str(info.value) and str(folder) in str(info.value)
    with pytest.raises(DatasetError) as info:
        datamodule(small_processed, "data.filters.min_length=100000").check_data()
    assert "passes the filters" in str(info.value) and "loosen data.filters.min_length" in str(info.value)


# -- item 5: trainer=auto ------------------------------------------------------------------------------------------


def test_trainer_auto_is_the_default_and_picks_this_machine(tmp_path: Path) -> None:
    from flowbb.training.preflight import resolve_auto_trainer

    cfg = compose_train_config(tmp_path, BASE)
    assert (cfg.trainer.accelerator, cfg.trainer.precision, cfg.trainer.devices) == ("auto", "auto", 1)
    note = resolve_auto_trainer(cfg)
    if torch.cuda.is_available():
        assert cfg.trainer.accelerator == "gpu" and cfg.trainer.precision in ("bf16-mixed", "32-true")
        assert "one CUDA GPU" in note
    else:
        assert (cfg.trainer.accelerator, cfg.trainer.precision) == ("cpu", "32-true")
        assert note == "trainer=auto: CPU (no CUDA GPU found), precision 32-true"
    explicit = compose_train_config(tmp_path, [*BASE, "trainer=cpu"])
    assert resolve_auto_trainer(explicit) is None and explicit.trainer.accelerator == "cpu"
