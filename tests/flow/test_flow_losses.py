"""Flow losses: zero at the truth, masking, rigid-motion invariance, kNN pair term, t-bin logging."""

from __future__ import annotations

import math

import pytest
import torch
from flow_testdata import make_batch

from flowbb.flow.config import FlowConfig, LossConfig
from flowbb.flow.interpolant import Interpolant
from flowbb.flow.losses import LOSS_TERMS, flow_losses, per_sample_losses, t_bin_losses
from flowbb.geometry import so3
from flowbb.geometry.backbone import backbone_from_frames, psi_from_backbone

TERMS = (*LOSS_TERMS, "total")


def _batch(real_backbones, lengths, t_values, seed=0):
    batch = make_batch(real_backbones, lengths)
    psi, psi_mask = psi_from_backbone(batch["atoms"], batch["res_mask"], batch["residue_index"])
    batch.update(psi_1=psi, psi_mask=psi_mask)
    t = torch.tensor(t_values, dtype=torch.float64)
    return Interpolant().corrupt(batch, torch.Generator().manual_seed(seed), t=t)


def _truth(batch):
    return {
        "pred_rots": batch["rots_1"].clone(),
        "pred_trans": batch["trans_1"].clone(),
        "pred_psi": batch["psi_1"].clone(),
    }


def _perturbed(batch, seed=1, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    b, l = batch["res_mask"].shape
    noise_r = so3.exp(0.2 * scale * torch.randn(b, l, 3, generator=g, dtype=torch.float64))
    m = batch["res_mask"][..., None]
    return {
        "pred_rots": batch["rots_1"] @ noise_r,
        "pred_trans": batch["trans_1"] + scale * torch.randn(b, l, 3, generator=g, dtype=torch.float64) * m,
        "pred_psi": batch["psi_1"] + 0.5 * scale * torch.randn(b, l, generator=g, dtype=torch.float64),
    }


def test_zero_at_truth_and_positive_otherwise(real_backbones):
    batch = _batch(real_backbones[:3], [50, 42, 35], [0.3, 0.8, 0.95])
    losses = flow_losses(batch, _truth(batch), FlowConfig())
    for k in TERMS:
        assert losses[k].abs().item() < 1e-12, k
    out = _perturbed(batch)
    losses, per = flow_losses(batch, out, FlowConfig(), return_per_sample=True)
    for k in TERMS:
        if k != "clash":  # 1 Å noise on real chains makes no CA pair closer than 3.8 Å (test_clash_term)
            assert losses[k].item() > 1e-4, k
        assert per[k].shape == (3,)
    # Auxiliary terms only where t > aux_t_threshold.
    assert per["bb_atom"][0] == 0 and per["pair_dist"][0] == 0
    assert per["bb_atom"][1] > 0 and per["pair_dist"][2] > 0
    cfg = FlowConfig().losses
    total = sum(
        w * per[k]
        for k, w in zip(
            LOSS_TERMS,
            (cfg.trans_weight, cfg.rot_weight, cfg.bb_atom_weight, cfg.pair_dist_weight, cfg.clash_weight),
        )
    )
    assert torch.allclose(per["total"], total)
    assert losses["total"].item() == pytest.approx(per["total"].mean().item())


def test_psi_from_atoms_when_not_given(real_backbones):
    batch = _batch(real_backbones[:2], [40, 33], [0.9, 0.9])
    out = _perturbed(batch)
    with_psi = flow_losses(batch, out)
    no_psi = {k: v for k, v in batch.items() if k not in ("psi_1", "psi_mask")}
    without = flow_losses(no_psi, out)
    for k in TERMS:
        assert torch.allclose(with_psi[k], without[k]), k
    with pytest.raises(KeyError, match="psi_1"):
        flow_losses({k: v for k, v in no_psi.items() if k != "atoms"}, out)


def test_t_scaling_of_main_terms(real_backbones):
    """Errors are divided by 1 - min(t, 0.9): squared losses scale by 1 / (1 - min(t, 0.9))^2."""
    batch = _batch(real_backbones[:1] * 4, [40] * 4, [0.2, 0.2, 0.5, 0.95])
    out = _perturbed(batch)
    # Make every sample's prediction error identical, and rots_t identical, so only t differs.
    for key in ("pred_rots", "pred_trans", "pred_psi"):
        out[key] = out[key][:1].expand_as(out[key]).clone()
    batch["rots_t"] = batch["rots_t"][:1].expand_as(batch["rots_t"]).clone()
    _, per = flow_losses(batch, out, return_per_sample=True)
    for k in ("trans", "rot"):
        ref = per[k][0] * (1 - 0.2) ** 2
        assert per[k][1] == pytest.approx(per[k][0].item(), rel=1e-12)
        assert (per[k][2] * 0.5**2).item() == pytest.approx(ref.item(), rel=1e-9)
        assert (per[k][3] * 0.1**2).item() == pytest.approx(ref.item(), rel=1e-9)


def test_padding_changes_nothing(real_backbones):
    """A chain's losses are the same alone and inside a padded batch, and garbage at padding is ignored."""
    lengths = [45, 30, 38]
    batch = _batch(real_backbones[:3], lengths, [0.85, 0.9, 0.95], seed=3)
    out = _perturbed(batch, seed=4)
    _, per = flow_losses(batch, out, return_per_sample=True)
    m = batch["res_mask"].bool()
    g = torch.Generator().manual_seed(5)
    dirty_batch = dict(batch)
    dirty_out = dict(out)
    for d, key in ((dirty_batch, "rots_1"), (dirty_batch, "rots_t"), (dirty_out, "pred_rots")):
        r = so3.sample_uniform(m.shape, generator=g, dtype=torch.float64)
        d[key] = torch.where(m[..., None, None], d[key], r)
    for d, key in ((dirty_batch, "trans_1"), (dirty_batch, "trans_t"), (dirty_out, "pred_trans")):
        d[key] = torch.where(
            m[..., None], d[key], 1e3 * torch.randn(*m.shape, 3, generator=g, dtype=torch.float64)
        )
    for d, key in ((dirty_batch, "psi_1"), (dirty_out, "pred_psi")):
        d[key] = torch.where(m, d[key], torch.randn(m.shape, generator=g, dtype=torch.float64))
    _, per_dirty = flow_losses(dirty_batch, dirty_out, return_per_sample=True)
    for k in TERMS:
        assert torch.allclose(per[k], per_dirty[k], rtol=1e-12, atol=0), k
    for i, n in enumerate(lengths):
        single = {k: (v[i : i + 1, :n] if v.dim() >= 2 else v[i : i + 1]) for k, v in batch.items()}
        single_out = {k: v[i : i + 1, :n] for k, v in out.items()}
        _, per_single = flow_losses(single, single_out, return_per_sample=True)
        for k in TERMS:
            assert per_single[k][0].item() == pytest.approx(per[k][i].item(), rel=1e-10), (k, i)


def _random_rigid(seed):
    g = torch.Generator().manual_seed(seed)
    return so3.sample_uniform((), generator=g, dtype=torch.float64), 20 * torch.randn(
        3, generator=g, dtype=torch.float64
    )


def test_invariant_under_global_rigid_motion(real_backbones):
    batch = _batch(real_backbones[:2], [48, 40], [0.6, 0.9], seed=6)
    out = _perturbed(batch, seed=7, scale=2.0)
    before = flow_losses(batch, out)
    q, s = _random_rigid(8)
    m = batch["res_mask"][..., None]
    moved = dict(batch)
    moved["rots_1"], moved["rots_t"] = q @ batch["rots_1"], q @ batch["rots_t"]
    moved["trans_1"] = (batch["trans_1"] @ q.T + s) * m
    moved["trans_t"] = (batch["trans_t"] @ q.T + s) * m
    moved["atoms"] = (batch["atoms"] @ q.T + s) * m[..., None]
    moved_out = {
        "pred_rots": q @ out["pred_rots"],
        "pred_trans": (out["pred_trans"] @ q.T + s) * m,
        "pred_psi": out["pred_psi"],
    }
    after = flow_losses(moved, moved_out)
    for k in TERMS:
        assert after[k].item() == pytest.approx(before[k].item(), rel=1e-9), k


def test_pair_distance_term_matches_brute_force(real_backbones):
    """The pair term equals a direct computation over the k nearest true-CA neighbours (dense, small L)."""
    k = 6
    batch = _batch(real_backbones[:1], [36], [0.9], seed=9)
    out = _perturbed(batch, seed=10)
    cfg = FlowConfig(losses=LossConfig(pair_dist_k=k))
    per = per_sample_losses(batch, out, cfg)
    ca = batch["trans_1"][0]
    d = torch.cdist(ca, ca)
    d.fill_diagonal_(float("inf"))
    nbrs = d.topk(k, largest=False).indices  # [L, k]
    true_atoms = backbone_from_frames(batch["rots_1"], batch["trans_1"], batch["psi_1"])[0]
    pred_atoms = backbone_from_frames(out["pred_rots"], out["pred_trans"], out["pred_psi"])[0]
    atom_ok = torch.ones(36, 4, dtype=torch.bool)
    atom_ok[:, 3] = batch["psi_mask"][0]
    num, den = 0.0, 0
    scale = 0.1 / (1 - 0.9)
    for i in range(36):
        for j in nbrs[i].tolist():
            for a in range(4):
                for c in range(4):
                    if not (atom_ok[i, a] and atom_ok[j, c]):
                        continue
                    dt = (true_atoms[i, a] - true_atoms[j, c]).norm()
                    dp = (pred_atoms[i, a] - pred_atoms[j, c]).norm()
                    num += ((dt - dp) * scale).item() ** 2
                    den += 1
    assert per["pair_dist"][0].item() == pytest.approx(num / den, rel=1e-6)


def test_gradients_finite_at_and_near_truth(real_backbones):
    batch = _batch(real_backbones[:2], [30, 26], [0.9, 0.95])
    for out in (_truth(batch), _perturbed(batch, scale=0.01)):
        rotvec = torch.zeros(2, 30, 3, dtype=torch.float64, requires_grad=True)
        trans = out["pred_trans"].clone().requires_grad_(True)
        psi = out["pred_psi"].clone().requires_grad_(True)
        pred = {"pred_rots": out["pred_rots"] @ so3.exp(rotvec), "pred_trans": trans, "pred_psi": psi}
        flow_losses(batch, pred)["total"].backward()
        for g in (rotvec.grad, trans.grad, psi.grad):
            assert torch.isfinite(g).all()


def test_t_bin_losses():
    per = {
        "trans": torch.tensor([1.0, 2.0, 3.0, 4.0, 10.0]),
        "total": torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0]),
    }
    t = torch.tensor([0.1, 0.2, 0.6, 0.99, 1.0])
    bins = t_bin_losses(per, t, num_bins=4)
    assert set(bins) == {
        "trans_t0.00-0.25",
        "trans_t0.50-0.75",
        "trans_t0.75-1.00",
        "total_t0.00-0.25",
        "total_t0.50-0.75",
        "total_t0.75-1.00",
    }
    assert bins["trans_t0.00-0.25"].item() == pytest.approx(1.5)
    assert bins["trans_t0.75-1.00"].item() == pytest.approx(7.0)
    assert bins["total_t0.50-0.75"].item() == pytest.approx(2.0)


def test_bad_inputs_are_named(real_backbones):
    batch = _batch(real_backbones[:1], [30], [0.5])
    out = _truth(batch)
    with pytest.raises(KeyError, match="rots_t"):
        flow_losses({k: v for k, v in batch.items() if k != "rots_t"}, out)
    with pytest.raises(KeyError, match="pred_psi"):
        flow_losses(batch, {k: v for k, v in out.items() if k != "pred_psi"})
    with pytest.raises(ValueError, match="pred_trans"):
        flow_losses(batch, {**out, "pred_trans": out["pred_trans"][:, :-1]})
    assert math.isfinite(flow_losses(batch, out)["total"].item())


def test_clash_term_value_invariance_and_gradient(real_backbones):
    """One residue moved 2 Å from a residue 10 positions away: the term equals the dense sum over all pairs."""
    batch = _batch(real_backbones[:2], [60, 45], [0.95, 0.5])
    out = _truth(batch)
    ca = out["pred_trans"]
    i, j = 20, 30
    direction = torch.nn.functional.normalize(ca[0, j] - ca[0, i], dim=0)
    moved = ca.clone()
    moved[0, j] = ca[0, i] + 2.0 * direction
    out["pred_trans"] = moved.requires_grad_(True)
    cfg = FlowConfig(losses=LossConfig(clash_weight=0.5))
    per = per_sample_losses(batch, out, cfg)
    # Other residues may come near the moved one too: count every pair below 3.8 Å exactly.
    d = (moved[0, :, None] - moved[0, None, :]).norm(dim=-1).detach()
    sep = (torch.arange(60)[:, None] - torch.arange(60)[None, :]).abs()
    overlap = torch.relu(3.8 - d) * (sep >= 3)
    expected = (0.1 * overlap).pow(2).sum() / 60 / (1 - 0.9) ** 2
    assert overlap[i, j] == pytest.approx(1.8, abs=1e-9)
    assert per["clash"][0].item() == pytest.approx(expected.item(), rel=1e-7)  # sqrt(d^2 + 1e-8)
    assert per["clash"][1].item() == 0.0  # t = 0.5 < aux_t_threshold
    base = per_sample_losses(batch, out, FlowConfig())
    assert torch.allclose(per["total"] - base["total"], 0.5 * per["clash"])
    # Gradient pushes the pair apart.
    per["clash"][0].backward()
    grad = out["pred_trans"].grad[0]
    assert float((grad[j] * direction).sum()) < 0
    # Rigid motion of the prediction leaves the term unchanged; bonded neighbours never count.
    g = torch.Generator().manual_seed(3)
    r = so3.exp(torch.randn(3, generator=g, dtype=torch.float64))
    from flowbb.flow.losses import clash_losses

    mask = batch["res_mask"]
    a = clash_losses(moved.detach(), mask, batch["residue_index"], cfg.losses, 3.8, 3)
    b = clash_losses(moved.detach() @ r.T + 7.0, mask, batch["residue_index"], cfg.losses, 3.8, 3)
    assert torch.allclose(a, b, rtol=1e-10)
    chain = torch.zeros(1, 5, 3, dtype=torch.float64)
    chain[0, :, 0] = torch.arange(5) * 1.0  # 1 Å spacing: |i - j| <= 2 pairs are close, |i - j| >= 3 are 3-4 Å
    value = clash_losses(chain, torch.ones(1, 5), None, LossConfig(), 3.8, 3)
    pairs = [(0, 3), (1, 4)]  # 3 Å apart; (0, 4) at 4 Å does not clash
    assert value.item() == pytest.approx(2 * len(pairs) * (0.1 * 0.8) ** 2 / 5, rel=1e-7)
