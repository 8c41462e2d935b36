"""Sampling guards (issue 14, item 6): the cost estimate measured on the real model, the length limit, per-step
progress. The checkpoint is the session fixture ``tiny_checkpoint`` (a few real training steps)."""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from hydra import compose, initialize_config_dir

from flowbb.errors import UserError
from flowbb.inference.checkpoint import LoadedCheckpoint, load_checkpoint
from flowbb.inference.cost import StepProgress, check_max_length, counting_model_fn, estimate_cost
from flowbb.inference.generate import SamplingSettings, generate, plan_batches

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def loaded(tiny_checkpoint: Path) -> Iterator[LoadedCheckpoint]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the tiny model's tensors are small: one thread is faster on a busy CPU
    yield load_checkpoint(tiny_checkpoint, device="cpu")
    torch.set_num_threads(threads)


class RecordingBar:
    """The display end of a progress bar: records what it is told."""

    opened: ClassVar[list[RecordingBar]] = []

    def __init__(self, total: int, desc: str) -> None:
        self.total, self.desc, self.n, self.closed = total, desc, 0, False
        RecordingBar.opened.append(self)

    def update(self, n: int) -> None:
        self.n += n

    def close(self) -> None:
        self.closed = True


def test_estimate_matches_the_run_and_steps_are_reported(loaded: LoadedCheckpoint, tmp_path: Path) -> None:
    settings = SamplingSettings(num_steps=10, max_tokens=64).resolved(loaded.flow_cfg)
    lengths = [16, 64]
    plan = plan_batches(lengths, 2, settings.max_tokens)  # L=16: one batch of 2; L=64: two batches of 1
    cost = estimate_cost(loaded.model, loaded.model_fn, loaded.flow_cfg, plan, settings, loaded.device)
    assert [p[0] for p in cost.probes] == [16, 64] and len(cost.batch_seconds) == len(plan) == 3
    assert cost.weight_bytes == sum(t.numel() * 4 for t in [*loaded.model.parameters(), *loaded.model.buffers()])
    line = cost.describe("cpu")
    assert line.startswith("estimated ") and "longest: L=64" in line and "\n" not in line

    RecordingBar.opened = []
    steps = StepProgress(plan, settings.num_steps + 1, show=lambda i: plan[i].length == 64, make_bar=RecordingBar)
    t0 = time.perf_counter()
    generate(counting_model_fn(loaded.model_fn, steps), loaded.flow_cfg, lengths, 2, tmp_path / "out",
             settings=settings, device=loaded.device)
    measured = time.perf_counter() - t0
    assert 0.2 < cost.seconds / measured < 5.0, (cost.seconds, measured)  # a two-probe estimate, same machine
    assert steps.calls == 3 * (settings.num_steps + 1)  # one network call per step plus the final one, per batch
    assert [(b.desc, b.total, b.n, b.closed) for b in RecordingBar.opened] == [("L=64 x 1", 11, 11, True)] * 2


def test_lengths_above_the_maximum_are_refused_unless_forced() -> None:
    check_max_length([100, 2000], 2000, force=False)
    with pytest.raises(UserError) as info:
        check_max_length([100, 100000], 2000, force=False)
    assert "lengths [100000] exceed max_length=2000" in str(info.value) and "force=true" in str(info.value)
    check_max_length([100000], 2000, force=True)


def test_cli_refuses_a_huge_length_before_loading(tiny_checkpoint: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    spec = importlib.util.spec_from_file_location("flowbb_sample_script", REPO / "scripts" / "sample.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose(config_name="sample", overrides=[f"ckpt_path={tiny_checkpoint}", "lengths=[100000]",
                                                       f"out_dir={tmp_path / 'out'}", "device=cpu"])
    capsys.readouterr()
    assert script.run(cfg) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "exceed max_length=2000" in err and not (tmp_path / "out").exists()
