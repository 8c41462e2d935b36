"""Interpolant: prior, paths, vector fields, OT coupling, stochastic-path noise."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from flow_testdata import make_batch

from flowbb.flow.config import FlowConfig, PathConfig
from flowbb.flow.interpolant import (
    Interpolant,
    _pairwise_aligned_cost,
    ot_coupling,
    rot_vector_field,
    trans_vector_field,
    transport_cost,
)
from flowbb.geometry import so3


def _interp(**path) -> Interpolant:
    """An interpolant whose ``flow.path`` takes ``path`` (the other groups: defaults)."""
    return Interpolant(FlowConfig(path=PathConfig(**path)))


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _mask(lengths: list[int], dtype: torch.dtype = torch.float64) -> torch.Tensor:
    l = max(lengths)
    return (torch.arange(l)[None] < torch.tensor(lengths)[:, None]).to(dtype)


def _random_data(lengths: list[int], seed: int, dtype: torch.dtype = torch.float64):
    """Random clean frames: uniform rotations, CA random walk (3.8 Å steps), centred; padding identity/0."""
    g = _gen(seed)
    mask = _mask(lengths, dtype)
    b, l = mask.shape
    steps = torch.randn(b, l, 3, generator=g, dtype=dtype)
    steps = 3.8 * steps / steps.norm(dim=-1, keepdim=True)
    ca = torch.cumsum(steps, 1) * mask[..., None]
    ca = (ca - (ca * mask[..., None]).sum(1, keepdim=True) / mask.sum(1)[:, None, None]) * mask[..., None]
    rots = so3.sample_uniform((b, l), generator=g, dtype=dtype)
    rots = torch.where(mask.bool()[..., None, None], rots, torch.eye(3, dtype=dtype))
    return rots, ca, mask


# -- prior -------------------------------------------------------------------------------------


def test_prior_centred_masked_and_scaled():
    mask = _mask([200, 150, 37, 200])
    interp = _interp(trans_scale=10.0)
    rots, trans = interp.sample_prior(mask, _gen(0), dtype=torch.float64)
    m = mask.bool()
    assert torch.all(trans[~m] == 0)
    assert torch.all(rots[~m] == torch.eye(3, dtype=torch.float64))
    centroid = (trans * mask[..., None]).sum(1) / mask.sum(1)[:, None]
    assert centroid.abs().max() < 1e-10
    # Per-coordinate variance of centred N(0, 100): 100 (n - 1) / n.
    n = mask.sum(1)
    expected = (100.0 * (n - 1) / n * n).sum() / n.sum()
    var = (trans[m] ** 2).mean()
    assert abs(var.item() / expected.item() - 1.0) < 0.06
    # Proper rotations, Haar mean of a rotation matrix is 0.
    valid_rots = rots[m]
    eye = torch.eye(3, dtype=torch.float64)
    assert torch.allclose(valid_rots @ valid_rots.transpose(-1, -2), eye.expand_as(valid_rots), atol=1e-10)
    assert torch.allclose(torch.linalg.det(valid_rots), torch.ones(valid_rots.shape[0], dtype=torch.float64))
    # Entries of a Haar rotation have mean 0 and variance 1/3.
    assert valid_rots.mean(0).abs().max() < 5.0 / math.sqrt(3 * valid_rots.shape[0])
    assert abs((valid_rots**2).mean().item() - 1.0 / 3.0) < 1e-9  # rows are unit vectors


def test_prior_seeded():
    mask = _mask([20, 13])
    interp = Interpolant()
    a = interp.sample_prior(mask, _gen(7))
    b = interp.sample_prior(mask, _gen(7))
    c = interp.sample_prior(mask, _gen(8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


# -- paths -------------------------------------------------------------------------------------


def test_corrupt_endpoints_give_prior_and_data():
    rots_1, trans_1, mask = _random_data([30, 22], seed=1)
    interp = Interpolant()
    out0 = interp.corrupt_frames(rots_1, trans_1, mask, _gen(3), t=torch.zeros(2, dtype=torch.float64))
    assert torch.allclose(out0["rots_t"], out0["rots_0"], atol=1e-12)
    assert torch.allclose(out0["trans_t"], out0["trans_0"], atol=1e-12)
    # Same generator state -> same prior; t -> 1 gives the data.
    out1 = interp.corrupt_frames(
        rots_1, trans_1, mask, _gen(3), t=torch.full((2,), 1.0 - 1e-9, dtype=torch.float64)
    )
    assert torch.equal(out1["rots_0"], out0["rots_0"])
    assert torch.allclose(out1["trans_t"], trans_1, atol=1e-7)
    assert so3.geodesic_distance(out1["rots_t"], rots_1)[mask.bool()].max() < 1e-7
    exact = interp.interpolate(
        out1["rots_0"], out1["trans_0"], rots_1, trans_1, torch.ones(2, dtype=torch.float64), mask
    )
    assert torch.allclose(exact[0], rots_1, atol=1e-10) and torch.allclose(exact[1], trans_1, atol=1e-10)


def test_corrupt_geodesic_consistency_and_padding():
    rots_1, trans_1, mask = _random_data([40, 25, 33], seed=2)
    interp = _interp(min_t=0.05)
    batch = {"rots_1": rots_1, "trans_1": trans_1, "res_mask": mask, "extra": torch.ones(1)}
    out = interp.corrupt(batch, _gen(4))
    assert "extra" in out and out["rots_1"] is rots_1
    t = out["t"]
    assert t.shape == (3,) and torch.all(t >= 0.05) and torch.all(t < 1.0)
    m = mask.bool()
    d_total = so3.geodesic_distance(out["rots_0"], rots_1)
    d_0t = so3.geodesic_distance(out["rots_0"], out["rots_t"])
    d_t1 = so3.geodesic_distance(out["rots_t"], rots_1)
    ok = m & (d_total < math.pi - 1e-3)
    assert torch.allclose(d_0t[ok], (t[:, None] * d_total)[ok], atol=1e-9)
    assert torch.allclose(d_t1[ok], ((1 - t)[:, None] * d_total)[ok], atol=1e-9)
    expected_trans = (1 - t)[:, None, None] * out["trans_0"] + t[:, None, None] * trans_1
    assert torch.allclose(out["trans_t"], expected_trans, atol=1e-12)
    for key in ("rots_0", "rots_t"):
        assert torch.all(out[key][~m] == torch.eye(3, dtype=torch.float64))
    for key in ("trans_0", "trans_t"):
        assert torch.all(out[key][~m] == 0)


def test_t_uniform_in_range():
    t = _interp(min_t=0.2).sample_t(20000, _gen(0), dtype=torch.float64)
    assert t.min() >= 0.2 and t.max() < 1.0
    assert abs(t.mean().item() - 0.6) < 0.01
    hist = torch.histc(t, bins=4, min=0.2, max=1.0) / t.numel()
    assert torch.all((hist - 0.25).abs() < 0.02)


def test_t_skew_draws_beta_times():
    """t_skew a: u = (t - min_t) / (1 - min_t) ~ Beta(a, 1), CDF u^a, mean a / (a + 1)."""
    a, min_t = 1.9, 0.01
    t = _interp(min_t=min_t, t_skew=a).sample_t(40000, _gen(1), dtype=torch.float64)
    u = (t - min_t) / (1 - min_t)
    assert u.min() >= 0 and u.max() < 1
    assert abs(u.mean().item() - a / (a + 1)) < 0.005
    for q in (0.25, 0.5, 0.75, 0.9):
        assert abs((u <= q).double().mean().item() - q**a) < 0.01
    with pytest.raises(ValueError, match="t_skew"):
        _interp(t_skew=0.0)


@pytest.mark.parametrize("t_value", [0.1, 0.5, 0.93])
def test_vector_fields_equal_finite_difference_velocity(t_value: float):
    rots_1, trans_1, mask = _random_data([17, 9], seed=5)
    interp = Interpolant()
    rots_0, trans_0 = interp.sample_prior(mask, _gen(6), dtype=torch.float64)
    h = 1e-5

    def path(tv: float):
        return interp.interpolate(
            rots_0, trans_0, rots_1, trans_1, torch.full((2,), tv, dtype=torch.float64), mask
        )

    rots_t, trans_t = path(t_value)
    (r_p, x_p), (r_m, x_m) = path(t_value + h), path(t_value - h)
    t = torch.full((2,), t_value, dtype=torch.float64)
    m = mask.bool()
    fd_trans = (x_p - x_m) / (2 * h)
    v_trans = trans_vector_field(trans_t, trans_1, t)
    assert torch.allclose(v_trans[m], fd_trans[m], atol=1e-6)
    # Body-frame angular velocity: vee(R_t^T dR/dt).
    fd_rot = so3.vee(rots_t.transpose(-1, -2) @ (r_p - r_m) / (2 * h))
    v_rot = rot_vector_field(rots_t, rots_1, t)
    ok = m & (so3.geodesic_distance(rots_0, rots_1) < math.pi - 1e-3)
    assert torch.allclose(v_rot[ok], fd_rot[ok], atol=1e-6)
    assert v_rot[ok].norm(dim=-1).max() > 0.5  # non-trivial fields
    v_r2, v_t2 = Interpolant.vector_fields(rots_t, trans_t, rots_1, trans_1, t)
    assert torch.equal(v_r2, v_rot) and torch.equal(v_t2, v_trans)


# -- OT coupling -------------------------------------------------------------------------------


def test_ot_is_optimal_over_all_permutations():
    """Within a same-length group, the returned pairing has the minimum aligned cost over all permutations."""
    rots_1, trans_1, mask = _random_data([24, 24, 24, 24, 24], seed=11)
    interp = _interp(coupling="ot")
    rots_0, trans_0 = interp.sample_prior(mask, _gen(12), dtype=torch.float64)
    cost, _ = _pairwise_aligned_cost(rots_0, trans_0, rots_1, trans_1, 0.1, 1.0)
    best = min(sum(cost[perm[j], j].item() for j in range(5)) for perm in itertools.permutations(range(5)))
    identity = sum(cost[j, j].item() for j in range(5))
    r_c, x_c = ot_coupling(rots_0, trans_0, rots_1, trans_1, mask, 0.1, 1.0)
    got = transport_cost(r_c, x_c, rots_1, trans_1, mask, 0.1, 1.0).sum().item()
    assert got == pytest.approx(best, rel=1e-9)
    assert best < identity  # the permutation is not trivially the identity in this draw


def test_ot_output_is_rotated_permutation_of_prior():
    rots_1, trans_1, mask = _random_data([20, 20, 20, 15, 20], seed=21)
    # Move the padding of chain 1 into the middle: still 20 valid residues, other positions.
    mask = torch.cat([mask, torch.zeros(5, 3, dtype=torch.float64)], 1)
    rots_1 = torch.cat([rots_1, torch.eye(3, dtype=torch.float64).expand(5, 3, 3, 3)], 1)
    trans_1 = torch.cat([trans_1, torch.zeros(5, 3, 3, dtype=torch.float64)], 1)
    perm = torch.arange(23)
    perm[5:8], perm[20:23] = torch.arange(20, 23), torch.arange(5, 8)
    mask[1], rots_1[1], trans_1[1] = mask[1, perm], rots_1[1, perm], trans_1[1, perm]
    interp = _interp(coupling="ot")
    rots_0, trans_0 = interp.sample_prior(mask, _gen(22), dtype=torch.float64)
    r_c, x_c = interp.couple(rots_0, trans_0, rots_1, trans_1, mask)
    m = mask.bool()
    assert torch.all(x_c[~m] == 0) and torch.all(r_c[~m] == torch.eye(3, dtype=torch.float64))
    used = set()
    for j in range(5):
        xj = x_c[j][m[j]]
        match = None
        for i in range(5):
            xi = trans_0[i][m[i]]
            if xi.shape != xj.shape:
                continue
            if torch.allclose(torch.cdist(xi, xi), torch.cdist(xj, xj), atol=1e-9):
                match = i
        assert match is not None and match not in used
        used.add(match)
        # One rigid rotation Q maps translations and rotations of the noise: x_j = Q x_i, R_j = Q R_i.
        q = r_c[j][m[j]] @ rots_0[match][m[match]].transpose(-1, -2)
        assert torch.allclose(q, q[:1].expand_as(q), atol=1e-9)
        assert torch.allclose(torch.einsum("ab,nb->na", q[0], trans_0[match][m[match]]), xj, atol=1e-9)
    assert (x_c * mask[..., None]).sum(1).abs().max() < 1e-9  # still centred


def test_ot_lowers_batch_cost_on_real_chains(real_backbones):
    if len(real_backbones) < 8 or min(len(b) for b in real_backbones) < 81:
        pytest.skip("needs 8 real chains of >= 81 residues (../shared/data/pdb/ddg; the bundled ones are shorter)")
    # Same-length group: 8 real chains cropped to 80 residues.
    batch = make_batch(real_backbones, [80] * len(real_backbones))
    interp = _interp(coupling="ot")
    r1, x1, mask = batch["rots_1"], batch["trans_1"], batch["res_mask"]
    r0, x0 = interp.sample_prior(mask, _gen(31), dtype=torch.float64)
    base = transport_cost(r0, x0, r1, x1, mask).sum()
    r_c, x_c = interp.couple(r0, x0, r1, x1, mask)
    coupled = transport_cost(r_c, x_c, r1, x1, mask).sum()
    assert coupled < 0.9 * base
    # Translation distance alone also drops (the coupling is mostly driven by it).
    assert ((x_c - x1) ** 2).sum() < ((x0 - x1) ** 2).sum()
    # All-different lengths: no pairing possible, alignment of each noise to its chain still lowers the cost.
    lengths = [60 + 3 * i for i in range(len(real_backbones))]
    batch = make_batch(real_backbones, lengths)
    r1, x1, mask = batch["rots_1"], batch["trans_1"], batch["res_mask"]
    r0, x0 = interp.sample_prior(mask, _gen(32), dtype=torch.float64)
    r_c, x_c = interp.couple(r0, x0, r1, x1, mask)
    per_chain_before = ((x0 - x1) ** 2).sum((1, 2))
    per_chain_after = ((x_c - x1) ** 2).sum((1, 2))
    assert torch.all(per_chain_after <= per_chain_before + 1e-9)
    assert transport_cost(r_c, x_c, r1, x1, mask).sum() < transport_cost(r0, x0, r1, x1, mask).sum()


def test_corrupt_with_ot_uses_coupled_prior():
    rots_1, trans_1, mask = _random_data([30] * 6, seed=41)
    base = _interp(coupling="base").corrupt_frames(rots_1, trans_1, mask, _gen(42))
    ot = _interp(coupling="ot").corrupt_frames(rots_1, trans_1, mask, _gen(42))
    assert torch.equal(base["t"], ot["t"])
    c_base = transport_cost(base["rots_0"], base["trans_0"], rots_1, trans_1, mask).sum()
    c_ot = transport_cost(ot["rots_0"], ot["trans_0"], rots_1, trans_1, mask).sum()
    assert c_ot < c_base


# -- stochastic paths --------------------------------------------------------------------------


def test_sfm_sigma_formula():
    interp = _interp(
        coupling="sfm", sfm_g_trans=3.0, sfm_sigma_min_trans=0.2, sfm_g_rots=0.5, sfm_sigma_min_rots=0.05
    )
    t = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=torch.float64)
    assert torch.allclose(interp.sfm_sigma_trans(t), torch.sqrt(9.0 * t * (1 - t) + 0.04))
    assert torch.allclose(interp.sfm_sigma_rots(t), torch.sqrt(0.25 * t * (1 - t) + 0.0025))


def test_sfm_noise_has_configured_variance():
    """Through corrupt(): x_t minus the deterministic path has variance sigma_t^2 (n-1)/n per coordinate,
    and the rotation noise R_det^T R_t has rotation vectors with E|v|^2 = 3 sigma_t^2 (small-sigma IGSO3)."""
    n, b = 64, 64
    rots_1, trans_1, mask = _random_data([n] * b, seed=51)
    interp = _interp(
        coupling="sfm",
        sfm_ot=False,
        sfm_g_trans=2.0,
        sfm_sigma_min_trans=0.1,
        sfm_g_rots=0.16,
        sfm_sigma_min_rots=0.01,
    )
    t = torch.full((b,), 0.3, dtype=torch.float64)
    out = interp.corrupt_frames(rots_1, trans_1, mask, _gen(52), t=t)
    r_det, x_det = interp.interpolate(out["rots_0"], out["trans_0"], rots_1, trans_1, t, mask)
    sig_t = math.sqrt(4.0 * 0.21 + 0.01)
    dx = out["trans_t"] - x_det
    assert abs((dx**2).mean().item() / (sig_t**2 * (n - 1) / n) - 1.0) < 0.05
    assert (dx.sum(1)).abs().max() < 1e-9  # centred noise keeps the centroid
    sig_r = math.sqrt(0.0256 * 0.21 + 1e-4)
    v = so3.log(r_det.transpose(-1, -2) @ out["rots_t"])
    assert abs((v**2).sum(-1).mean().item() / (3 * sig_r**2) - 1.0) < 0.05


def test_sfm_rotation_noise_angle_scale_large_sigma():
    """At larger sigma (IGSO3 series regime) the mean angle matches the IGSO3 angle density."""
    b, n = 40, 100
    mask = _mask([n] * b)
    interp = _interp(coupling="sfm", sfm_g_rots=1.2, sfm_sigma_min_rots=0.0)
    t = torch.full((b,), 0.5, dtype=torch.float64)
    eye = torch.eye(3, dtype=torch.float64).expand(b, n, 3, 3)
    rots, _ = interp.add_path_noise(eye, torch.zeros(b, n, 3, dtype=torch.float64), t, mask, _gen(61))
    sigma = 0.6
    grid = torch.linspace(0, math.pi, 20001, dtype=torch.float64)
    pdf = so3.igso3_angle_density(grid, sigma)
    mean_angle = torch.trapezoid(grid * pdf, grid).item()
    emp = so3.angle(rots).mean().item()
    assert emp == pytest.approx(mean_angle, rel=0.02)


def test_base_and_ot_paths_have_no_noise():
    rots_1, trans_1, mask = _random_data([12, 12], seed=71)
    for coupling in ("base", "ot"):
        interp = _interp(coupling=coupling)
        out = interp.corrupt_frames(rots_1, trans_1, mask, _gen(72))
        r_det, x_det = interp.interpolate(out["rots_0"], out["trans_0"], rots_1, trans_1, out["t"], mask)
        assert torch.allclose(out["trans_t"], x_det) and torch.allclose(out["rots_t"], r_det)


# -- misc --------------------------------------------------------------------------------------


def test_self_condition_draw_frequency():
    interp = _interp(self_condition_prob=0.5)
    g = _gen(81)
    freq = np.mean([interp.draw_self_condition(g) for _ in range(2000)])
    assert abs(freq - 0.5) < 0.04
    assert not any(_interp(self_condition_prob=0.0).draw_self_condition(g) for _ in range(50))


def test_config_errors_name_the_key():
    with pytest.raises(ValueError, match=r"flow\.path\.coupling"):
        _interp(coupling="diffusion")
    with pytest.raises(KeyError, match="rots_1"):
        Interpolant().corrupt({"trans_1": torch.zeros(1, 3, 3), "res_mask": torch.ones(1, 3)})
    with pytest.raises(TypeError, match="as_flow_config"):
        Interpolant({"path": {"coupling": "ot"}})  # a mapping is converted where it enters, not here
