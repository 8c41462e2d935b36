"""FlowModel: config presets, shapes, SE(3) equivariance (float64), padding invariance, no L x L on flash."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from flowbb.model.flow_model import FlowModel, FlowModelConfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "model"
TINY_IPA = {
    "type": "ipa", "num_blocks": 2, "c_s": 32, "c_z": 16, "c_hidden": 16, "no_heads": 2, "no_qk_points": 4,
    "no_v_points": 4, "c_pos_emb": 16, "c_time_emb": 16, "c_edge_feat": 16, "num_dist_bins": 8,
    "c_edge_bias": 16, "seq_tfmr_heads": 2, "c_skip": 8,
}  # fmt: skip


def _tiny(kind: str, dtype=torch.float64, seed: int = 0, **overrides) -> FlowModel:
    """A tiny model with every zero-initialised layer perturbed, so that all paths are non-trivial."""
    torch.manual_seed(seed)
    if kind in ("flash", "flash_seq"):
        cfg = OmegaConf.load(CONFIGS / "tiny.yaml")
        if kind == "flash_seq":  # with the sequence-offset bias and the sequence-neighbour distograms
            overrides = {"seq_offset_freqs": 4, "seq_neighbors": 2, "attn_pair_channels": 6, **overrides}
        model = instantiate(cfg, **overrides)
    else:
        model = FlowModel(**{**TINY_IPA, **overrides})
    model = model.to(dtype)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def _batch(chain_fn, rot_fn, B=2, L=23, seed=1, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    trans = chain_fn(B, L, dtype, g)
    mask = torch.ones(B, L, dtype=dtype)
    if B > 1:
        mask[1, 15:] = 0
    ri = torch.arange(L).repeat(B, 1) + 3
    ri[:, 9:] += 4  # chain break
    return {
        "rots_t": rot_fn((B, L), dtype, g),
        "trans_t": trans,
        "t": torch.rand(B, generator=g, dtype=dtype),
        "res_mask": mask,
        "residue_index": ri,
        "sc_trans": trans + torch.randn(B, L, 3, generator=g, dtype=dtype),
    }


FLASH_ONLY = {"z_factor_rank", "knn_k", "knn_chunk", "max_offset", "c_offset"}


@pytest.mark.parametrize("name", ["flash", "ipa", "small", "tiny"])
def test_config_presets_instantiate_with_their_keys(name):
    cfg = OmegaConf.load(CONFIGS / f"{name}.yaml")
    keys = set(cfg) - {"_target_"}
    assert keys <= set(FlowModelConfig.__dataclass_fields__)
    model = instantiate(cfg)
    assert isinstance(model, FlowModel)
    assert {k: model.config_dict()[k] for k in keys} == {k: cfg[k] for k in keys}
    if model.cfg.type == "ipa":  # keys the dense path does not read are absent from its preset
        assert not keys & FLASH_ONLY
    with pytest.raises(TypeError, match="unknown config keys"):
        FlowModel(**{k: cfg[k] for k in keys}, typo_key=1)


def test_outputs_shapes_and_padding_values(chain_fn, rot_fn):
    model = _tiny("flash")
    batch = _batch(chain_fn, rot_fn)
    out = model(batch)
    assert out["pred_rots"].shape == (2, 23, 3, 3)
    assert out["pred_trans"].shape == (2, 23, 3)
    assert out["pred_psi"].shape == (2, 23)
    eye = torch.eye(3, dtype=torch.float64)
    assert torch.equal(out["pred_rots"][1, 15:], eye.expand(8, 3, 3))
    assert (out["pred_trans"][1, 15:] == 0).all() and (out["pred_psi"][1, 15:] == 0).all()
    r = out["pred_rots"][0]
    torch.testing.assert_close(r @ r.transpose(-1, -2), eye.expand_as(r), atol=1e-12, rtol=0)
    assert (out["pred_trans"][0] - batch["trans_t"][0]).abs().max() > 1e-3  # the trunk moved the frames
    # sc_trans absent == zeros
    b2 = {k: v for k, v in batch.items() if k != "sc_trans"}
    b3 = dict(batch, sc_trans=torch.zeros_like(batch["trans_t"]))
    torch.testing.assert_close(model(b2)["pred_trans"], model(b3)["pred_trans"])


@pytest.mark.parametrize("kind", ["flash", "flash_seq", "ipa"])
def test_predicted_frames_are_se3_equivariant(kind, chain_fn, rot_fn):
    model = _tiny(kind)
    batch = _batch(chain_fn, rot_fn)
    g = torch.Generator().manual_seed(5)
    Q = rot_fn((), torch.float64, g)
    t = torch.randn(3, generator=g, dtype=torch.float64) * 30.0
    moved = dict(
        batch,
        rots_t=Q @ batch["rots_t"],
        trans_t=batch["trans_t"] @ Q.T + t,
        sc_trans=batch["sc_trans"] @ Q.T + t,
    )
    out, out_m = model(batch), model(moved)
    valid = batch["res_mask"].bool()
    scale = out["pred_trans"].abs().max().item()
    torch.testing.assert_close(out_m["pred_rots"][valid], (Q @ out["pred_rots"])[valid], atol=1e-9, rtol=0)
    torch.testing.assert_close(
        out_m["pred_trans"][valid], (out["pred_trans"] @ Q.T + t)[valid], atol=1e-9 * scale, rtol=0
    )
    torch.testing.assert_close(out_m["pred_psi"], out["pred_psi"], atol=1e-9, rtol=0)


@pytest.mark.parametrize("kind", ["flash", "flash_seq", "ipa"])
def test_padding_changes_no_valid_prediction(kind, chain_fn, rot_fn):
    model = _tiny(kind)
    batch = _batch(chain_fn, rot_fn, B=1, L=19)
    out = model(batch)
    g = torch.Generator().manual_seed(9)
    extra = 6
    padded = {
        "rots_t": torch.cat([batch["rots_t"], rot_fn((1, extra), torch.float64, g)], 1),
        "trans_t": torch.cat([batch["trans_t"], batch["trans_t"][:, :extra] + 0.3], 1),
        "t": batch["t"],
        "res_mask": torch.cat([batch["res_mask"], torch.zeros(1, extra, dtype=torch.float64)], 1),
        "residue_index": torch.cat([batch["residue_index"], torch.arange(extra)[None]], 1),
        "sc_trans": torch.cat(
            [batch["sc_trans"], torch.randn(1, extra, 3, generator=g, dtype=torch.float64)], 1
        ),
    }
    out_p = model(padded)
    for key in ("pred_rots", "pred_trans", "pred_psi"):
        torch.testing.assert_close(out_p[key][:, :19], out[key], atol=1e-10, rtol=0)
    assert (out_p["pred_trans"][:, 19:] == 0).all() and (out_p["pred_psi"][:, 19:] == 0).all()
    # beside a longer chain in one batch
    other = _batch(chain_fn, rot_fn, B=1, L=19 + extra, seed=4)
    both = {k: torch.cat([padded[k], other[k]]) for k in padded}
    out_b = model(both)
    torch.testing.assert_close(out_b["pred_trans"][:1, :19], out["pred_trans"], atol=1e-10, rtol=0)


@pytest.mark.parametrize("kind", ["flash", "flash_seq"])
def test_flash_model_builds_no_quadratic_tensor_and_uses_every_parameter(kind, chain_fn, rot_fn, shape_recorder):
    model = _tiny(kind, dtype=torch.float32, knn_chunk=8)  # kNN chunks of 8 queries: [B, 8, L] distances
    L = 53  # prime: no feature width of the tiny preset equals it
    batch = _batch(chain_fn, rot_fn, B=2, L=L, dtype=torch.float32)
    with shape_recorder() as rec:
        out = model(batch)
        loss = out["pred_trans"].square().mean() + out["pred_psi"].sin().mean() + out["pred_rots"].sum()
        loss.backward()
    quadratic = [(op, sh) for op, sh in rec.shapes if sum(d == L for d in sh) >= 2]
    assert not quadratic, quadratic[:5]
    unused = sorted(n for n, p in model.named_parameters() if p.grad is None)
    assert not unused, unused  # every parameter takes part (DDP needs no find_unused_parameters)


@pytest.mark.parametrize("kind", ["flash", "ipa"])
def test_update_scale_one_minus_t_scales_each_update_and_is_identity_at_t1(chain_fn, rot_fn, kind):
    """update_scale=one_minus_t (every preset): at t = 1 the prediction is the input frames exactly; with one
    block, the local translation update and the quaternion vector are (1 - t) times those of update_scale=none
    with the same weights, and psi is unchanged."""
    from flowbb.geometry import so3

    batch = _batch(chain_fn, rot_fn)
    batch["t"] = torch.tensor([1.0, 0.3], dtype=torch.float64)
    valid = batch["res_mask"].bool()
    model = _tiny(kind, update_scale="one_minus_t")
    out = model(batch)
    assert torch.equal(out["pred_rots"][0], batch["rots_t"][0])
    torch.testing.assert_close(out["pred_trans"][0], batch["trans_t"][0], atol=1e-12, rtol=0)
    assert (out["pred_trans"][1] - batch["trans_t"][1])[valid[1]].abs().max() > 1e-3

    scaled = _tiny(kind, num_blocks=1, update_scale="one_minus_t")
    plain = _tiny(kind, num_blocks=1, update_scale="none")
    plain.load_state_dict(scaled.state_dict())
    o_s, o_p = scaled(batch), plain(batch)
    scale = (1.0 - batch["t"])[:, None, None]

    def local_trans(o):  # R_t^T (x_pred - x_t)
        return torch.einsum("blji,blj->bli", batch["rots_t"], o["pred_trans"] - batch["trans_t"])

    def quat_vec(o):  # q = (1, v) / |(1, v)|  ->  v = q_xyz / q_w
        q = so3.rotmat_to_quat(batch["rots_t"].transpose(-1, -2) @ o["pred_rots"])
        return q[..., 1:] / q[..., :1]

    torch.testing.assert_close(local_trans(o_s)[valid], (scale * local_trans(o_p))[valid], atol=1e-10, rtol=0)
    torch.testing.assert_close(quat_vec(o_s)[valid], (scale * quat_vec(o_p))[valid], atol=1e-8, rtol=0)
    assert quat_vec(o_p)[1][valid[1]].abs().max() > 1e-2
    torch.testing.assert_close(o_s["pred_psi"], o_p["pred_psi"])


def test_update_scale_default_is_the_presets_value_and_rejects_unknown_value():
    presets = {OmegaConf.load(p).get("update_scale") for p in CONFIGS.glob("*.yaml")}
    assert presets == {FlowModelConfig().update_scale} == {"one_minus_t"}
    with pytest.raises(ValueError, match="update_scale"):
        FlowModelConfig(update_scale="sqrt")


def test_sequence_features_are_flash_only_and_see_the_chain():
    with pytest.raises(ValueError, match="flash-only"):
        FlowModel(**TINY_IPA, seq_neighbors=1)
    model = _tiny("flash_seq")
    assert model.blocks[0]["ipa"].seq_offset_freqs == 4 and model.edge_embedder.seq_neighbors == 2



@pytest.mark.parametrize("kind", ["flash_seq", "ipa"])
def test_rna_torsion_head_is_invariant_and_frames_equivariant(kind, chain_fn, rot_fn):
    """model.num_torsions=8 (RNA): frames SE(3)-equivariant and the eight unit (sin, cos) pairs invariant under a
    random rigid motion (float64); padded positions give zero torsions."""
    model = _tiny(kind, num_torsions=8)
    assert model.psi_head.out.out_features == 16
    batch = _batch(chain_fn, rot_fn)
    g = torch.Generator().manual_seed(11)
    Q = rot_fn((), torch.float64, g)
    t = torch.randn(3, generator=g, dtype=torch.float64) * 30.0
    moved = dict(batch, rots_t=Q @ batch["rots_t"], trans_t=batch["trans_t"] @ Q.T + t,
                 sc_trans=batch["sc_trans"] @ Q.T + t)
    out, out_m = model(batch), model(moved)
    valid = batch["res_mask"].bool()
    assert out["pred_torsions"].shape == (2, 23, 8, 2)
    torch.testing.assert_close(out["pred_torsions"][valid].norm(dim=-1), torch.ones(int(valid.sum()), 8,
                                                                                   dtype=torch.float64))
    assert (out["pred_torsions"][~valid] == 0).all()
    assert out["pred_torsions"][valid].std(0).min() > 1e-4  # per-residue, not constant
    torch.testing.assert_close(out_m["pred_torsions"], out["pred_torsions"], atol=1e-9, rtol=0)
    torch.testing.assert_close(out_m["pred_rots"][valid], (Q @ out["pred_rots"])[valid], atol=1e-9, rtol=0)
    scale = out["pred_trans"].abs().max().item()
    torch.testing.assert_close(out_m["pred_trans"][valid], (out["pred_trans"] @ Q.T + t)[valid],
                               atol=1e-9 * scale, rtol=0)


def test_protein_torsion_head_is_the_psi_head():
    """num_torsions defaults to 1: the psi head's weights and output as before RNA (checkpoints load)."""
    model = _tiny("flash")
    assert model.cfg.num_torsions == 1 and model.psi_head.out.weight.shape == (2, model.cfg.c_s)
    with pytest.raises(ValueError, match="num_torsions"):
        FlowModelConfig(num_torsions=0)
