"""Lightning 2.6's ``EMAWeightAveraging`` against flowbb's ``EMA`` callback: why flowbb keeps its own.

One tiny fit per callback (a ``torch.nn.Linear`` under ``module.model``, as in ``FlowModule``; the loss is the sum of
the weights, so SGD moves every weight by ``-LR`` per step and both averages have closed forms), then the facts:

- checkpoint: Lightning writes the average *into* ``state_dict`` and moves the training weights to
  ``current_model_state``; there is no ``ema_state_dict``. flowbb's Lightning-free loader
  (``flowbb.inference.checkpoint.load_checkpoint``) then labels the average ``"raw"`` and cannot return the training
  weights at all (``use_ema=False`` gives the average too);
- after fit: Lightning copies the average over the training weights for good, so a checkpoint written at the end of
  fit (flowbb's ``last.ckpt`` is) holds no training weights; flowbb's keeps them (resume continues from them);
- average: ``EMAWeightAveraging(decay)`` copies the first step's weights and then decays at a constant rate, with no
  warm-up, so at decay 0.999 it stays near the first weights for ~1000 steps; flowbb warms up with
  ``min(decay, (1 + n) / (10 + n))``;
- validation: Lightning swaps the average in only around its own validation loop
  (``on_validation_epoch_start/end``); flowbb's validation samples from ``on_train_batch_end`` and swaps through
  ``EMA.swapped`` (Lightning's callback has only a private ``_swap_models``).
"""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import Callback, EMAWeightAveraging
from torch.utils.data import DataLoader, TensorDataset

from flowbb.inference.checkpoint import EMA_KEY, EMA_UPDATES_KEY, build_model, load_checkpoint
from flowbb.training.ema import EMA

STEPS = 30
LR = 0.01
DECAY = 0.999  # configs/callbacks/default.yaml
CFG = {"model": {"_target_": "torch.nn.Linear", "in_features": 3, "out_features": 2}, "flow": {}}


class _Module(pl.LightningModule):
    """Stands in for ``FlowModule``: the network under ``model``, the config in ``hparams.cfg``; d loss / d w = 1."""

    def __init__(self) -> None:
        super().__init__()
        self.save_hyperparameters({"cfg": CFG})
        torch.manual_seed(0)
        self.model = build_model(CFG["model"])

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        return sum(p.sum() for p in self.model.parameters())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=LR)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(torch.zeros(STEPS, 1)), batch_size=1)


class _Probe(Callback):
    """Records the weight the model holds at the last ``on_train_batch_end`` (where flowbb's validation samples)."""

    def __init__(self) -> None:
        self.seen: torch.Tensor | None = None

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: object) -> None:
        if trainer.global_step == STEPS:
            self.seen = pl_module.model.weight.detach().clone()


def _fit(callback: Callback, root: Path) -> tuple[_Module, _Probe, torch.Tensor, Path]:
    """Fit STEPS steps; returns (module, probe, initial weight, checkpoint written after fit)."""
    module = _Module()
    w0 = module.model.weight.detach().clone()
    probe = _Probe()
    trainer = pl.Trainer(max_steps=STEPS, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[callback, probe],
                         default_root_dir=root)
    trainer.fit(module)
    path = root / "end.ckpt"
    trainer.save_checkpoint(path)
    return module, probe, w0, path


def _ema_offsets(warmup: bool) -> float:
    """Average minus w0 after STEPS updates of w_k = w0 - k LR: flowbb's (shadow starts at w0, warm-up decay) or
    torch's ``get_ema_avg_fn`` (first update copies w_1, then constant decay)."""
    avg = 0.0
    for n in range(STEPS):
        w = -(n + 1) * LR
        if warmup:
            d = min(DECAY, (1 + n) / (10 + n))
            avg = d * avg + (1 - d) * w
        else:
            avg = w if n == 0 else DECAY * avg + (1 - DECAY) * w
    return avg


@pytest.fixture(scope="module")
def fits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[_Module, _Probe, torch.Tensor, Path]]:
    return {"flowbb": _fit(EMA(decay=DECAY), tmp_path_factory.mktemp("flowbb_ema")),
            "lightning": _fit(EMAWeightAveraging(decay=DECAY), tmp_path_factory.mktemp("lightning_ema"))}


def test_averages_warmup_vs_constant_decay(fits: dict) -> None:
    trained = -STEPS * LR  # w_N - w0
    _, _, w0, path = fits["flowbb"]
    ours = torch.load(path, weights_only=True)[EMA_KEY]["weight"]
    torch.testing.assert_close(ours - w0, torch.full_like(w0, _ema_offsets(warmup=True)), rtol=0, atol=1e-6)
    _, _, w0_l, path_l = fits["lightning"]
    theirs = torch.load(path_l, weights_only=True)["state_dict"]["model.weight"]
    torch.testing.assert_close(theirs - w0_l, torch.full_like(w0_l, _ema_offsets(warmup=False)), rtol=0, atol=1e-6)
    # flowbb's average trails the weights by ~4 steps; Lightning's has hardly left the first step's weights
    assert abs(_ema_offsets(True) - trained) < 5 * LR and abs(_ema_offsets(False) - trained) > 28 * LR


def test_lightning_checkpoint_has_no_flowbb_ema_key(fits: dict) -> None:
    ckpt = torch.load(fits["lightning"][3], weights_only=True)
    assert EMA_KEY not in ckpt and EMA_UPDATES_KEY not in ckpt
    assert {"current_model_state", "averaging_state"} <= set(ckpt)
    ours = torch.load(fits["flowbb"][3], weights_only=True)
    assert EMA_KEY in ours and ours[EMA_UPDATES_KEY] == STEPS and "current_model_state" not in ours


def test_lightning_checkpoint_loads_the_average_as_raw(fits: dict) -> None:
    """With flowbb's loader (no Lightning): ours gives the EMA weights as ``"ema"`` and the training weights on
    ``use_ema=False``; Lightning's gives its average as ``"raw"`` both ways."""
    _, _, w0, path = fits["flowbb"]
    ema = load_checkpoint(path, device="cpu")
    raw = load_checkpoint(path, use_ema=False, device="cpu")
    assert ema.weights == "ema" and ema.ema_num_updates == STEPS and raw.weights == "raw"
    torch.testing.assert_close(ema.model.weight - w0, torch.full_like(w0, _ema_offsets(True)), rtol=0, atol=1e-6)
    torch.testing.assert_close(raw.model.weight, w0 - STEPS * LR, rtol=0, atol=1e-6)

    _, _, w0_l, path_l = fits["lightning"]
    average = w0_l + _ema_offsets(False)
    for use_ema in (True, False):
        got = load_checkpoint(path_l, use_ema=use_ema, device="cpu")
        assert got.weights == "raw"
        torch.testing.assert_close(got.model.weight, average, rtol=0, atol=1e-6)


def test_lightning_overwrites_training_weights_at_fit_end(fits: dict) -> None:
    """A checkpoint written after fit (flowbb's last.ckpt is): Lightning's holds the average twice, the training
    weights are gone; ours holds the training weights under ``state_dict`` and the average under ``EMA_KEY``."""
    _, _, w0_l, path_l = fits["lightning"]
    ckpt = torch.load(path_l, weights_only=True)
    average = w0_l + _ema_offsets(False)
    torch.testing.assert_close(ckpt["current_model_state"]["model.weight"], average, rtol=0, atol=1e-6)
    assert not torch.allclose(ckpt["current_model_state"]["model.weight"], w0_l - STEPS * LR, atol=1e-3)
    _, _, w0, path = fits["flowbb"]
    ours = torch.load(path, weights_only=True)
    torch.testing.assert_close(ours["state_dict"]["model.weight"], w0 - STEPS * LR, rtol=0, atol=1e-6)


def test_validation_at_train_batch_end_sees_raw_weights_under_lightning(fits: dict) -> None:
    """flowbb samples for validation at ``on_train_batch_end``; there Lightning's callback leaves the raw weights in the
    model and offers no public way to swap (only ``_swap_models``); ours has ``EMA.swapped``."""
    module_l, probe_l, w0_l, _ = fits["lightning"]
    torch.testing.assert_close(probe_l.seen, w0_l - STEPS * LR, rtol=0, atol=1e-6)
    assert not hasattr(EMAWeightAveraging, "swapped") and hasattr(EMA, "swapped")
    # both leave the average in the module after fit
    torch.testing.assert_close(module_l.model.weight.detach(), w0_l + _ema_offsets(False), rtol=0, atol=1e-6)
    module, _, w0, _ = fits["flowbb"]
    torch.testing.assert_close(module.model.weight.detach(), w0 + _ema_offsets(True), rtol=0, atol=1e-6)
