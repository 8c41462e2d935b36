"""Every experiment x model x data x trainer preset composes, resolves and builds its model (or refuses the
combination with its reason: flash-only keys on the ipa model), so that no preset is broken by a change elsewhere in the config tree."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from train_testdata import CONFIG_DIR, compose_train_config

from flowbb.inference.checkpoint import build_model


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


EXPERIMENTS, MODELS, DATA, TRAINERS = (_options(g) for g in ("experiment", "model", "data", "trainer"))


def test_the_preset_lists_are_read() -> None:
    assert {"cpu_small", "debug", "foldflow_flash", "foldflow_ipa"} <= set(EXPERIMENTS)
    assert {"flash", "ipa", "small", "tiny"} <= set(MODELS) and {"demo", "pdb"} <= set(DATA)
    assert {"auto", "cpu", "gpu", "ddp"} <= set(TRAINERS)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_preset_combination_composes_and_builds_its_model(experiment: str, tmp_path: Path) -> None:
    built: dict[str, object] = {}
    for model, data, trainer in itertools.product(MODELS, DATA, TRAINERS):
        cfg = compose_train_config(tmp_path / "run", [f"experiment={experiment}", f"model={model}",
                                                      f"data={data}", f"trainer={trainer}"])
        resolved = OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
        assert resolved["data"]["_target_"] and resolved["trainer"]["_target_"]
        assert resolved["model"]["_target_"] == "flowbb.model.flow_model.FlowModel"
        if model in built:  # data and trainer do not change the model
            continue
        try:
            built[model] = build_model(cfg.model)
        except Exception as err:  # noqa: BLE001 - hydra wraps the model's ValueError; the reason must be in it
            built[model] = err
            assert "flash-only" in str(err) and model == "ipa", (experiment, model, err)
    ok = [m for m, v in built.items() if not isinstance(v, Exception)]
    assert ok, f"experiment={experiment} builds no model"
    # the experiment's own model (no model= override) always builds
    own = build_model(compose_train_config(tmp_path / "run", [f"experiment={experiment}"]).model)
    assert sum(p.numel() for p in own.parameters()) > 0


@pytest.mark.parametrize("experiment", ["foldflow_flash", "rnaflow_flash"])
def test_the_paper_size_flash_model_fits_the_fused_gpu_kernels(experiment: str, tmp_path: Path) -> None:
    """At the paper's dimensions (c_s 256, c_z 128, C 128, 8 heads, 8/12 points, rank 2) the default flash model's
    lifted heads, padded to a multiple of 8 as on CUDA, are at most 256 wide: flash-attn's and PyTorch's flash kernel
    take them (the exact lifting would be 409/420)."""
    model = build_model(compose_train_config(tmp_path / "run", [f"experiment={experiment}"]).model)
    layers = [m for m in model.modules() if hasattr(m, "lifted_widths")]
    assert layers and layers[0].no_heads == 8 and layers[0].c_hidden == 128
    for layer in layers:
        padded = -(-max(layer.lifted_widths()) // 8) * 8
        assert padded <= 256 and padded % 8 == 0, (experiment, layer.lifted_widths())
