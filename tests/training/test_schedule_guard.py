"""Learning-rate schedule and the non-finite step guard's counting."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from flowbb.training.guard import NonFiniteGuard, NonFiniteStepsError
from flowbb.training.schedule import lr_lambda


def test_warmup_then_cosine_to_floor() -> None:
    f = lr_lambda("cosine", warmup_steps=10, total_steps=110, min_lr_ratio=0.1)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.1 + 0.9 * 0.5)
    assert f(110) == pytest.approx(0.1) and f(500) == pytest.approx(0.1)
    vals = [f(s) for s in range(10, 111)]
    assert all(a >= b for a, b in itertools.pairwise(vals))


def test_constant_and_errors() -> None:
    f = lr_lambda("constant", warmup_steps=0, total_steps=-1)
    assert f(0) == 1.0 and f(10**6) == 1.0
    with pytest.raises(ValueError, match="max_steps"):
        lr_lambda("cosine", 10, -1)
    with pytest.raises(ValueError, match="optim.schedule"):
        lr_lambda("linear", 10, 100)


def test_guard_counts_and_stops() -> None:
    g = NonFiniteGuard(max_consecutive=3)
    assert g.is_finite(torch.tensor(1.0)) and not g.is_finite(torch.tensor(math.nan))
    assert not g.is_finite(torch.tensor([1.0, math.inf]))
    g.record_skip("loss")
    g.record_skip("grad")
    g.record_ok()
    assert (g.skipped_loss, g.skipped_grad, g.skipped, g.consecutive) == (1, 1, 2, 0)
    restored = NonFiniteGuard(3)
    restored.load_state_dict(g.state_dict())
    assert restored.skipped == 2
    g.record_skip("loss")
    g.record_skip("loss")
    with pytest.raises(NonFiniteStepsError, match="3 consecutive"):
        g.record_skip("grad")
