"""The flow config: Hydra group ``flow`` (nested groups path / losses / sampler, every key a field, no ``_target_``),
the one converter :func:`as_flow_config` (nested mappings, the flat mappings of old checkpoints, unknown keys named)
and the validation messages, which name the nested key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from flowbb.flow.config import (
    GROUPS,
    LEGACY_KEYS,
    FlowConfig,
    LossConfig,
    PathConfig,
    SamplerConfig,
    as_flow_config,
)
from flowbb.flow.interpolant import Interpolant

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _compose(*overrides: str):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose(config_name=None, overrides=list(overrides))


@pytest.mark.parametrize("name", ["base", "ot", "sfm"])
def test_flow_group_composes_and_converts(name: str):
    cfg = _compose(f"+flow={name}", "flow.losses.pair_dist_k=12", "flow.sampler.num_steps=7")
    flow = cfg.flow
    assert set(flow.keys()) == set(GROUPS)  # no _target_, no stray key
    for group, cls in GROUPS.items():  # every field set, scalars only
        assert set(flow[group].keys()) == {f.name for f in dataclasses.fields(cls)}, group
        assert not any(OmegaConf.is_config(v) for v in flow[group].values()), group
    obj = as_flow_config(flow)
    assert obj.path.coupling == name and obj.losses.pair_dist_k == 12 and obj.sampler.num_steps == 7
    assert Interpolant(obj).cfg is obj


def test_yaml_defaults_match_dataclass_defaults():
    assert as_flow_config(_compose("+flow=base").flow) == FlowConfig()


def test_partial_nested_mapping_takes_the_defaults():
    cfg = as_flow_config({"path": {"coupling": "ot"}, "losses": {"clash_weight": 1.0}})
    assert cfg == FlowConfig(path=PathConfig(coupling="ot"), losses=LossConfig(clash_weight=1.0))
    assert as_flow_config(None) == FlowConfig() and as_flow_config(cfg) is cfg


def test_legacy_flat_keys_map_to_their_places():
    """Checkpoints written before the nesting hold every old flat key (and ``_target_``): each lands in its place."""
    flat = {
        "_target_": "flowbb.flow.config.FlowConfig",
        "coupling": "sfm", "min_t": 0.02, "trans_scale": 12.0, "self_condition_prob": 0.4,
        "sfm_g_trans": 2.5, "sfm_sigma_min_trans": 0.02, "sfm_g_rots": 0.3, "sfm_sigma_min_rots": 0.03,
        "sfm_ot": False, "ot_rot_weight": 1.5,
        "length_scale": 0.2, "loss_t_clip": 0.8, "loss_trans_weight": 2.1, "loss_rot_weight": 1.1,
        "loss_bb_atom_weight": 0.3, "loss_pair_dist_weight": 0.35, "loss_clash_weight": 0.5,
        "loss_torsion_weight": 0.9, "aux_t_threshold": 0.25, "pair_dist_k": 12, "knn_chunk_size": 512,
        "loss_t_bins": 5,
        "sample_num_steps": 50, "sample_rot_rate": 8.0, "sample_noise_scale": 0.1, "sample_self_condition": False,
    }
    assert set(flat) - {"_target_"} == set(LEGACY_KEYS)  # the test holds every old key
    expected = FlowConfig(
        path=PathConfig(coupling="sfm", min_t=0.02, trans_scale=12.0, self_condition_prob=0.4, ot_rot_weight=1.5,
                        sfm_ot=False, sfm_g_trans=2.5, sfm_sigma_min_trans=0.02, sfm_g_rots=0.3,
                        sfm_sigma_min_rots=0.03),
        losses=LossConfig(length_scale=0.2, t_clip=0.8, trans_weight=2.1, rot_weight=1.1, bb_atom_weight=0.3,
                          pair_dist_weight=0.35, clash_weight=0.5, torsion_weight=0.9, aux_t_threshold=0.25,
                          pair_dist_k=12, knn_chunk_size=512, t_bins=5),
        sampler=SamplerConfig(num_steps=50, rot_rate=8.0, noise_scale=0.1, self_condition=False),
    )
    assert as_flow_config(flat) == expected
    assert as_flow_config(OmegaConf.create(flat)) == expected  # as stored in hyper-parameters, read back
    # every field of the new config is reached by exactly one old key, except those added after the nesting
    added_later = {("sampler", "clash_guidance"), ("sampler", "clash_guidance_min_t"), ("sampler", "langevin_rate"),
                   ("sampler", "temperature"), ("path", "t_skew")}
    targets = sorted(LEGACY_KEYS.values())
    assert targets == sorted((g, f.name) for g, cls in GROUPS.items() for f in dataclasses.fields(cls)
                             if (g, f.name) not in added_later)
    # the old defaults (flow/base.yaml before the nesting) are the new defaults
    old_defaults = {old: getattr(getattr(FlowConfig(), g), f) for old, (g, f) in LEGACY_KEYS.items()}
    assert as_flow_config(old_defaults) == FlowConfig()


def test_unknown_keys_and_bad_values_are_named():
    with pytest.raises(ValueError, match=r"unknown key.*flow\.trans_sclae"):
        as_flow_config({"trans_sclae": 10.0})
    with pytest.raises(ValueError, match=r"unknown key.*flow\.losses\.clash_wieght"):
        as_flow_config({"losses": {"clash_wieght": 1.0}})
    with pytest.raises(ValueError, match=r"unknown key.*flow\.path\.loss_clash_weight"):
        as_flow_config({"path": {"loss_clash_weight": 1.0}})
    with pytest.raises(ValueError, match=r"mixes.*loss_clash_weight -> flow\.losses\.clash_weight"):
        as_flow_config({"path": {"coupling": "ot"}, "loss_clash_weight": 1.0})
    with pytest.raises(ValueError, match=r"drop _target_"):
        as_flow_config({"_target_": "flowbb.flow.config.FlowConfig", "path": {}})
    with pytest.raises(TypeError, match=r"flow\.sampler must be a mapping"):
        as_flow_config({"sampler": 100})
    cases = [({"path": {"coupling": "diffusion"}}, r"flow\.path\.coupling"),
             ({"path": {"min_t": 1.0}}, r"flow\.path\.min_t"),
             ({"path": {"trans_scale": 0.0}}, r"flow\.path\.trans_scale"),
             ({"path": {"sfm_g_rots": -1.0}}, r"flow\.path\.sfm_g_rots"),
             ({"losses": {"t_clip": 1.0}}, r"flow\.losses\.t_clip"),
             ({"losses": {"clash_weight": -1.0}}, r"flow\.losses\.clash_weight"),
             ({"losses": {"pair_dist_k": 0}}, r"flow\.losses\.pair_dist_k"),
             ({"sampler": {"num_steps": 0}}, r"flow\.sampler\.num_steps"),
             ({"loss_t_clip": 1.5}, r"flow\.losses\.t_clip")]  # an old checkpoint's bad value: its new name
    for mapping, match in cases:
        with pytest.raises(ValueError, match=match):
            as_flow_config(mapping)
    with pytest.raises(TypeError, match=r"flow\.losses must be a LossConfig"):
        FlowConfig(losses={"clash_weight": 1.0})  # type: ignore[arg-type]
