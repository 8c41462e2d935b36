"""Euler sampler with analytic model functions (no network)."""

from __future__ import annotations

import math

import pytest
import torch

from flowbb.flow.config import FlowConfig, PathConfig, SamplerConfig
from flowbb.flow.sampler import make_generator, res_mask_from_lengths, sample, sample_lengths
from flowbb.geometry import so3
from flowbb.geometry.backbone import backbone_from_frames


def _target(b: int, l: int, seed: int = 1000, dtype: torch.dtype = torch.float64):
    g = torch.Generator().manual_seed(seed)
    rots = so3.sample_uniform((b, l), generator=g, dtype=dtype)
    trans = 5.0 * torch.randn(b, l, 3, generator=g, dtype=dtype)
    psi = (torch.rand(b, l, generator=g, dtype=dtype) - 0.5) * 2 * math.pi
    return rots, trans, psi


class FixedTarget:
    """model_fn that predicts the same clean structure at every step and records its inputs."""

    def __init__(self, rots: torch.Tensor, trans: torch.Tensor, psi: torch.Tensor) -> None:
        self.rots, self.trans, self.psi = rots, trans, psi
        self.calls: list[dict[str, torch.Tensor]] = []

    def __call__(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        self.calls.append({k: v.clone() for k, v in batch.items()})
        return {"pred_rots": self.rots, "pred_trans": self.trans, "pred_psi": self.psi}


def _identity_model(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Predicts the current frames as clean: zero vector field (only the stochastic term moves)."""
    return {
        "pred_rots": batch["rots_t"],
        "pred_trans": batch["trans_t"],
        "pred_psi": torch.zeros_like(batch["t"])[:, None].expand(batch["res_mask"].shape),
    }


def test_converges_to_fixed_target_and_trajectory_lengths():
    mask = res_mask_from_lengths([12, 9], dtype=torch.float64)
    rots, trans, psi = _target(2, 12)
    model = FixedTarget(rots, trans, psi)
    cfg = FlowConfig(path=PathConfig(min_t=0.01))
    out = sample(model, mask, cfg, num_steps=50, rot_rate=10.0, generator=make_generator(0), save_traj=True)
    m = mask.bool()
    assert len(model.calls) == 51
    for key in (
        "traj_rots",
        "traj_trans",
        "traj_atoms",
        "clean_traj_rots",
        "clean_traj_trans",
        "clean_traj_atoms",
        "clean_traj_psi",
        "ts",
    ):
        assert out[key].shape[0] == 51, key
    assert out["ts"][0].item() == pytest.approx(0.01) and out["ts"][-1].item() == 1.0
    # The integrated x_t reaches the target: translations exactly on the last Euler step, rotations on the
    # exp schedule up to (1 - rate dt)^steps of the initial angle.
    assert torch.allclose(out["traj_trans"][-1][m], trans[m], atol=1e-9)
    assert so3.geodesic_distance(out["traj_rots"][-1], rots)[m].max() < 1e-3
    dist = torch.stack([(out["traj_trans"][i] - trans)[m].norm(dim=-1).mean() for i in range(51)])
    assert torch.all(dist[1:] <= dist[:-1] + 1e-9)
    ang = torch.stack([so3.geodesic_distance(out["traj_rots"][i], rots)[m].mean() for i in range(51)])
    assert torch.all(ang[1:] <= ang[:-1] + 1e-9) and ang[0] > 1.0
    # The sample is the final clean prediction; padding is zero / identity.
    assert torch.allclose(out["trans"][m], trans[m]) and torch.allclose(out["rots"][m], rots[m])
    expected_atoms = backbone_from_frames(rots, trans, psi) * mask[..., None, None]
    assert torch.allclose(out["atoms"], expected_atoms, atol=1e-10)
    assert torch.all(out["atoms"][~m] == 0) and torch.all(out["trans"][~m] == 0)
    assert torch.all(out["traj_trans"][:, ~m] == 0)
    # The model saw the prior first (centred, t = min_t) and t increasing to 1.
    t_seen = torch.tensor([c["t"][0].item() for c in model.calls])
    assert torch.all(t_seen[1:] > t_seen[:-1]) and t_seen[-1] == 1.0
    first = model.calls[0]["trans_t"]
    assert (first * mask[..., None]).sum(1).abs().max() < 1e-9


def test_self_conditioning_feeds_previous_clean_prediction():
    mask = res_mask_from_lengths([10], dtype=torch.float64)

    class Shifting:
        def __init__(self) -> None:
            self.n = 0
            self.sc: list[torch.Tensor] = []
            self.pred: list[torch.Tensor] = []

        def __call__(self, batch):
            self.sc.append(batch["sc_trans"].clone())
            self.n += 1
            pred = batch["trans_t"] + float(self.n)
            self.pred.append(pred.clone())
            return {
                "pred_rots": batch["rots_t"],
                "pred_trans": pred,
                "pred_psi": torch.zeros(1, 10, dtype=torch.float64),
            }

    model = Shifting()
    sample(model, mask, FlowConfig(), num_steps=5, generator=make_generator(1))
    assert torch.all(model.sc[0] == 0)
    for i in range(1, 6):
        assert torch.equal(model.sc[i], model.pred[i - 1])
    model2 = Shifting()
    sample(model2, mask, FlowConfig(), num_steps=5, self_condition=False, generator=make_generator(1))
    assert all(torch.all(s == 0) for s in model2.sc)


def test_seeded_repeatable_and_seeds_differ():
    mask = res_mask_from_lengths([15, 11])
    rots, trans, psi = _target(2, 15, dtype=torch.float32)
    run = lambda seed, noise: sample(
        FixedTarget(rots, trans, psi),
        mask,
        FlowConfig(),
        num_steps=20,
        noise_scale=noise,
        generator=make_generator(seed),
        save_traj=True,
    )
    for noise in (0.0, 0.3):
        a, b, c = run(5, noise), run(5, noise), run(6, noise)
        for key in ("traj_trans", "traj_rots", "atoms"):
            assert torch.equal(a[key], b[key]), key
        assert not torch.equal(a["traj_trans"], c["traj_trans"])
    # The stochastic term changes the path for the same seed.
    assert not torch.equal(run(5, 0.0)["traj_trans"], run(5, 0.3)["traj_trans"])


def test_ode_is_deterministic_given_the_prior():
    """noise_scale = 0: the trajectory depends only on the prior (same seed -> same prior -> same path)."""
    mask = res_mask_from_lengths([8])
    out_a = sample(
        _identity_model,
        mask,
        FlowConfig(),
        num_steps=10,
        noise_scale=0.0,
        generator=make_generator(3),
        save_traj=True,
    )
    # With a zero vector field and no noise, the state never moves.
    assert torch.equal(out_a["traj_trans"][0], out_a["traj_trans"][-1])
    assert torch.allclose(out_a["traj_rots"][0], out_a["traj_rots"][-1], atol=1e-6)


def test_stochastic_term_scale():
    """Zero vector field: x_1 - x_0 accumulates sum_i noise_scale sqrt(dt) trans_scale eps_i (centred), so its
    per-coordinate variance is noise_scale^2 trans_scale^2 (1 - min_t) (n - 1)/n; the rotation increments
    compose to rotation vectors with E|v|^2 ~ 3 noise_scale^2 (1 - min_t)."""
    b, n = 64, 50
    mask = res_mask_from_lengths([n] * b, dtype=torch.float64)
    cfg = FlowConfig(path=PathConfig(min_t=0.1, trans_scale=10.0))
    out = sample(
        _identity_model, mask, cfg, num_steps=10, noise_scale=0.1, generator=make_generator(4), save_traj=True
    )
    dx = out["traj_trans"][-1] - out["traj_trans"][0]
    expected = 0.01 * 100.0 * 0.9 * (n - 1) / n
    assert abs((dx**2).mean().item() / expected - 1.0) < 0.05
    v = so3.log(out["traj_rots"][0].transpose(-1, -2) @ out["traj_rots"][-1])
    assert abs((v**2).sum(-1).mean().item() / (3 * 0.01 * 0.9) - 1.0) < 0.05


def test_sample_lengths_padding_and_errors():
    rots, trans, psi = _target(3, 7, dtype=torch.float32)
    out = sample_lengths(FixedTarget(rots, trans, psi), [7, 3, 5], FlowConfig(sampler=SamplerConfig(num_steps=4)))
    assert out["atoms"].shape == (3, 7, 4, 3)
    assert torch.all(out["atoms"][1, 3:] == 0) and torch.all(out["atoms"][2, 5:] == 0)
    assert torch.all(out["res_mask"].sum(1) == torch.tensor([7.0, 3.0, 5.0]))
    with pytest.raises(KeyError, match="pred_psi"):
        sample(
            lambda batch: {"pred_rots": batch["rots_t"], "pred_trans": batch["trans_t"]},
            res_mask_from_lengths([4]),
            num_steps=2,
        )
    with pytest.raises(ValueError, match="lengths"):
        res_mask_from_lengths([3, 0])
    with pytest.raises(ValueError, match="num_steps"):
        sample(_identity_model, res_mask_from_lengths([4]), num_steps=0)


def test_config_defaults_drive_the_sampler():
    mask = res_mask_from_lengths([6])
    model = FixedTarget(*_target(1, 6, dtype=torch.float32))
    cfg = FlowConfig(path=PathConfig(min_t=0.2), sampler=SamplerConfig(num_steps=7))
    sample(model, mask, cfg, generator=make_generator(0))
    assert len(model.calls) == 8
    assert model.calls[0]["t"][0].item() == pytest.approx(0.2)


def test_explicit_prior_is_the_starting_point():
    mask = res_mask_from_lengths([9, 6], dtype=torch.float64)
    rots0, trans0, _ = _target(2, 9, seed=77)
    trans0 = trans0 + 1e3 * (1 - mask)[..., None]  # garbage at padding is reset
    model = FixedTarget(*_target(2, 9))
    out = sample(model, mask, FlowConfig(), num_steps=3, prior=(rots0, trans0), save_traj=True)
    m = mask.bool()
    assert torch.equal(out["traj_trans"][0][m], trans0[m]) and torch.all(out["traj_trans"][0][~m] == 0)
    assert torch.equal(model.calls[0]["rots_t"][m], rots0[m])
    with pytest.raises(ValueError, match="prior"):
        sample(model, mask, num_steps=2, prior=(rots0[:, :5], trans0))


def test_langevin_step_is_the_score_drift_of_the_gaussian_path():
    """One Euler step with the Langevin term at temperature 0: x <- x + dt (x1 - x)/(1 - t) - c dt (x - t x1)."""
    mask = res_mask_from_lengths([10, 10], dtype=torch.float64)
    rots, trans, psi = _target(2, 10)
    trans = trans - trans.mean(1, keepdim=True)
    cfg = FlowConfig(path=PathConfig(min_t=0.2))
    kw = {"num_steps": 4, "generator": make_generator(3), "save_traj": True}
    out = sample(FixedTarget(rots, trans, psi), mask, cfg, langevin_rate=1.5, temperature=0.0, **kw)
    x0, x1 = out["traj_trans"][0], out["traj_trans"][1]
    t, dt = 0.2, 0.2
    expected = x0 + dt * (trans - x0) / (1 - t) - 1.5 * dt * (x0 - t * trans)
    assert torch.allclose(x1, expected, atol=1e-10)
    plain = sample(FixedTarget(rots, trans, psi), mask, cfg, **(kw | {"generator": make_generator(3)}))
    assert torch.equal(plain["traj_trans"][0], x0)  # same prior
    assert torch.allclose(out["traj_rots"], plain["traj_rots"])  # rotations are untouched
    with pytest.raises(ValueError, match="langevin_rate"):
        sample(FixedTarget(rots, trans, psi), mask, cfg, langevin_rate=-1.0)


def test_langevin_at_temperature_one_keeps_the_path_marginal_and_lower_sharpens_it():
    """Data = one structure x1, so the model x1_hat = x1 is exact and x_t ~ t x1 + (1 - t) N(0, sigma^2) (centred).
    The Langevin term at temperature 1 keeps that spread along the trajectory; at temperature 0.25 it is smaller."""
    b, n, sigma = 128, 20, 10.0
    mask = res_mask_from_lengths([n] * b, dtype=torch.float64)
    rots, trans, psi = _target(1, n)
    trans = trans - trans.mean(1, keepdim=True)
    model = FixedTarget(rots.expand(b, n, 3, 3), trans.expand(b, n, 3), psi.expand(b, n))
    cfg = FlowConfig(path=PathConfig(min_t=0.01, trans_scale=sigma))

    def spread_at_half(temperature: float) -> float:
        out = sample(model, mask, cfg, num_steps=100, langevin_rate=4.0, temperature=temperature,
                     generator=make_generator(11), save_traj=True)
        i = int((out["ts"] - 0.5).abs().argmin())
        t = float(out["ts"][i])
        noise = out["traj_trans"][i] - t * trans
        return noise.std().item() / ((1 - t) * sigma * math.sqrt((n - 1) / n))

    assert abs(spread_at_half(1.0) - 1.0) < 0.05
    cold = spread_at_half(0.25)
    assert 0.4 < cold < 0.85
