"""Loading a flowbb checkpoint without Lightning (flowbb.inference.checkpoint): EMA / raw weights, the stored config,
one clear error per kind of bad file, and the one checkpoint format training writes.

The checkpoint is the session fixture ``tiny_checkpoint`` (tests/conftest.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from flowbb.inference.checkpoint import (
    FlowbbCheckpointError,
    LoadedCheckpoint,
    load_checkpoint,
    read_checkpoint,
)


@pytest.fixture(scope="module")
def loaded(tiny_checkpoint: Path) -> LoadedCheckpoint:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the tiny model's tensors are small: one thread is faster on a busy CPU
    yield load_checkpoint(tiny_checkpoint, device="cpu")
    torch.set_num_threads(threads)


def test_load_checkpoint_ema_raw_and_config(tiny_checkpoint: Path, loaded: LoadedCheckpoint):
    ckpt = read_checkpoint(tiny_checkpoint)
    assert loaded.weights == "ema" and loaded.ema_num_updates > 0 and loaded.global_step > 0
    assert not loaded.model.training
    assert all(not p.requires_grad for p in loaded.model.parameters())
    assert loaded.cfg.model == ckpt["hyper_parameters"]["cfg"]["model"]
    assert loaded.flow_cfg.path.trans_scale == ckpt["hyper_parameters"]["cfg"]["flow"]["path"]["trans_scale"]
    ema_state = loaded.model.state_dict()
    for k, v in ckpt["ema_state_dict"].items():
        assert torch.equal(ema_state[k], v), k
    raw = load_checkpoint(tiny_checkpoint, use_ema=False, device="cpu")
    assert raw.weights == "raw"
    raw_state = raw.model.state_dict()
    for k, v in raw_state.items():
        assert torch.equal(v, ckpt["state_dict"]["model." + k]), k
    assert any(not torch.equal(raw_state[k], ema_state[k]) for k in raw_state if raw_state[k].is_floating_point())


def test_checkpoint_errors_name_path_and_reason(tiny_checkpoint: Path, tmp_path: Path):
    cases = {}
    cases["missing"] = (tmp_path / "nope.ckpt", "no such file")
    cases["dir"] = (tmp_path, "is a directory")
    junk = tmp_path / "junk.ckpt"
    junk.write_text("this is not a checkpoint\n")
    cases["junk"] = (junk, "not a readable PyTorch checkpoint")
    plain = tmp_path / "plain_state_dict.pt"
    torch.save({"weight": torch.zeros(3)}, plain)
    cases["plain"] = (plain, "no 'state_dict'")
    ckpt = torch.load(tiny_checkpoint, map_location="cpu", weights_only=False)
    other = dict(ckpt, hyper_parameters={"lr": 0.1})  # another LightningModule's hyper-parameters
    other_path = tmp_path / "other_module.ckpt"
    torch.save(other, other_path)
    cases["other_module"] = (other_path, "no flowbb training config")
    # a flowbb checkpoint whose stored model config is not the model its weights belong to
    cfg = dict(ckpt["hyper_parameters"]["cfg"])
    model_cfg = dict(cfg["model"])
    int_keys = [k for k, v in model_cfg.items() if isinstance(v, int) and not isinstance(v, bool) and v > 1
                and k.startswith(("c_", "node", "num_", "hidden"))]
    assert int_keys, f"no integer size in the tiny model config: {model_cfg}"
    model_cfg[int_keys[0]] = model_cfg[int_keys[0]] + 8
    cfg["model"] = model_cfg
    mismatched = dict(ckpt, hyper_parameters={"cfg": cfg})
    mismatched_path = tmp_path / "mismatched.ckpt"
    torch.save(mismatched, mismatched_path)
    cases["mismatched"] = (mismatched_path, "do not fit the model")
    for name, (path, reason) in cases.items():
        with pytest.raises(FlowbbCheckpointError) as info:
            load_checkpoint(path, device="cpu")
        msg = str(info.value)
        assert str(path) in msg and reason in msg, (name, msg)


def test_training_uses_the_one_checkpoint_format(tiny_checkpoint: Path, loaded: LoadedCheckpoint):
    """Training writes and builds through the definitions of flowbb.inference.checkpoint (one ``EMA_KEY``, one
    ``build_model``), so the keys it writes are the keys the loader reads and the layouts agree."""
    from flowbb.inference import checkpoint as ck
    from flowbb.training import ema, module

    assert (ema.EMA_KEY, ema.EMA_UPDATES_KEY) == (ck.EMA_KEY, ck.EMA_UPDATES_KEY) and module.build_model is ck.build_model
    ckpt = read_checkpoint(tiny_checkpoint)
    assert isinstance(ckpt[ck.EMA_KEY], dict) and int(ckpt[ck.EMA_UPDATES_KEY]) == loaded.ema_num_updates > 0
    reference = module.FlowModule(loaded.cfg).model
    assert ck.MODEL_PREFIX == "model." and type(reference) is type(loaded.model)
    ref_state, own_state = reference.state_dict(), ck.build_model(loaded.cfg.model).state_dict()
    assert {k: tuple(v.shape) for k, v in ref_state.items()} == {k: tuple(v.shape) for k, v in own_state.items()}


def test_checkpoint_with_flat_flow_config_loads_and_samples(tiny_checkpoint: Path, loaded: LoadedCheckpoint,
                                                            tmp_path: Path):
    """A checkpoint written before the nested flow config stores the 24 flat keys (and ``_target_``): it loads to the
    same FlowConfig and samples the same backbones as the nested one."""
    from flowbb.flow.config import LEGACY_KEYS
    from flowbb.inference.generate import SamplingSettings, generate

    ckpt = torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)
    cfg = dict(ckpt["hyper_parameters"]["cfg"])
    nested = cfg["flow"]
    flat = {old: nested[group][field] for old, (group, field) in LEGACY_KEYS.items()}
    cfg["flow"] = {"_target_": "flowbb.flow.config.FlowConfig", **flat}
    old_path = tmp_path / "flat_flow.ckpt"
    torch.save(dict(ckpt, hyper_parameters={"cfg": cfg}), old_path)
    old = load_checkpoint(old_path, device="cpu")
    assert old.flow_cfg == loaded.flow_cfg and "path" not in old.cfg.flow
    settings = SamplingSettings(num_steps=3)
    a = generate(loaded.model_fn, loaded.flow_cfg, [9], 2, tmp_path / "new", seed=5, settings=settings)
    b = generate(old.model_fn, old.flow_cfg, [9], 2, tmp_path / "old", seed=5, settings=settings)
    for x, y in zip(a, b, strict=True):
        assert (x.path.read_bytes(), x.seed) == (y.path.read_bytes(), y.seed)
    cfg["flow"] = dict(flat, loss_clash_wieght=1.0)  # an unknown key: one error naming it
    bad_path = tmp_path / "bad_flow.ckpt"
    torch.save(dict(ckpt, hyper_parameters={"cfg": cfg}), bad_path)
    with pytest.raises(FlowbbCheckpointError, match="loss_clash_wieght"):
        load_checkpoint(bad_path, device="cpu")
