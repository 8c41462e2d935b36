"""EMA weights: the average itself, swapping in and out, and checkpoint contents."""

from __future__ import annotations

import pytest
import torch

from flowbb.inference.checkpoint import EMA_KEY, EMA_UPDATES_KEY
from flowbb.training.ema import EMA


class _Holder(torch.nn.Module):
    """Stands in for the LightningModule: EMA only touches its ``model`` attribute."""

    def __init__(self) -> None:
        super().__init__()
        self.model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))


def test_average_matches_formula_and_swaps_back() -> None:
    torch.manual_seed(0)
    holder = _Holder()
    ema = EMA(decay=0.9)
    w0 = holder.model[0].weight.detach().clone()
    ema.update(holder.model)  # first update: decay min(0.9, 1/10) = 0.1 from the initial copy (no change)
    expected = w0.clone()
    for n in range(1, 6):
        with torch.no_grad():
            holder.model[0].weight.add_(1.0)
        d = min(0.9, (1 + n) / (10 + n))
        expected = d * expected + (1 - d) * holder.model[0].weight.detach()
        ema.update(holder.model)
    assert ema.num_updates == 6
    assert torch.allclose(ema.shadow["0.weight"], expected, atol=1e-6)
    trained = holder.model[0].weight.detach().clone()
    with ema.swapped(holder):
        assert torch.allclose(holder.model[0].weight, expected, atol=1e-6)
    assert torch.equal(holder.model[0].weight, trained)
    # buffers are copied, not averaged
    assert torch.equal(ema.shadow["1.running_mean"], holder.model[1].running_mean)


def test_checkpoint_holds_training_weights_and_ema() -> None:
    holder = _Holder()
    ema = EMA(decay=0.99)
    ema.update(holder.model)
    with torch.no_grad():
        holder.model[0].weight.mul_(2.0)
    ema.update(holder.model)
    trained = {k: v.clone() for k, v in holder.model.state_dict().items()}
    ema.swap_in(holder)  # e.g. after fit: EMA weights stay in the model
    ckpt = {"state_dict": {"model." + k: v for k, v in holder.model.state_dict().items()}}
    ema.on_save_checkpoint(None, holder, ckpt)  # type: ignore[arg-type]
    assert torch.equal(ckpt["state_dict"]["model.0.weight"], trained["0.weight"])
    assert torch.allclose(ckpt[EMA_KEY]["0.weight"], ema.shadow["0.weight"])
    assert ckpt[EMA_UPDATES_KEY] == 2
    fresh = EMA(decay=0.99)
    fresh.on_load_checkpoint(None, holder, ckpt)  # type: ignore[arg-type]
    assert fresh.num_updates == 2 and torch.equal(fresh.shadow["0.weight"], ckpt[EMA_KEY]["0.weight"])


def test_bad_decay() -> None:
    with pytest.raises(ValueError, match="decay"):
        EMA(decay=1.0)
