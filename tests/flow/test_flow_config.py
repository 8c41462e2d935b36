"""Hydra group ``flow``: every key of base/ot/sfm is a FlowConfig field (flat, all used) and instantiates."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from flowbb.flow.config import FlowConfig, as_flow_config
from flowbb.flow.interpolant import Interpolant

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("name", ["base", "ot", "sfm"])
def test_flow_group_composes_and_instantiates(name: str):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(config_name=None, overrides=[f"+flow={name}", "flow.pair_dist_k=12"])
    flow = cfg.flow
    keys = set(flow.keys()) - {"_target_"}
    assert keys == {f.name for f in dataclasses.fields(FlowConfig)}  # every field set, no stray key
    for key in keys:  # flat: scalars only
        assert not OmegaConf.is_config(flow[key]), key
    obj = instantiate(flow)
    assert isinstance(obj, FlowConfig)
    assert obj.coupling == name and obj.pair_dist_k == 12
    assert as_flow_config(flow) == obj
    assert Interpolant(flow).cfg == obj


def test_yaml_defaults_match_dataclass_defaults():
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(config_name=None, overrides=["+flow=base"])
    assert instantiate(cfg.flow) == FlowConfig()
