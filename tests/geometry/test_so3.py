"""SO(3) maps, conversions and samplers against scipy and closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats
from scipy.spatial.transform import Rotation

from flowbb.geometry import so3

DTYPES = [torch.float32, torch.float64]
TOL = {torch.float32: 2e-6, torch.float64: 1e-12}


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _unit_axes(n: int, dtype: torch.dtype, seed: int = 1) -> torch.Tensor:
    axes = torch.randn(n, 3, generator=_gen(seed), dtype=torch.float64)
    axes = axes / axes.norm(dim=-1, keepdim=True)
    # include the coordinate axes and their negatives (the hardest cases at pi)
    eye = torch.eye(3, dtype=torch.float64)
    return torch.cat([axes, eye, -eye]).to(dtype)


def test_hat_vee_cross() -> None:
    v = torch.randn(5, 3, generator=_gen(), dtype=torch.float64)
    x = torch.randn(5, 3, generator=_gen(1), dtype=torch.float64)
    k = so3.hat(v)
    torch.testing.assert_close(k @ x[..., None], torch.cross(v, x, dim=-1)[..., None], rtol=0, atol=1e-14)
    torch.testing.assert_close(k.transpose(-1, -2), -k, rtol=0, atol=0)
    torch.testing.assert_close(so3.vee(k), v, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_exp_log_match_scipy(dtype: torch.dtype) -> None:
    rots = so3.sample_uniform((2000,), _gen(), dtype=torch.float64)
    ref_rotvec = torch.from_numpy(Rotation.from_matrix(rots.numpy()).as_rotvec())
    away = ref_rotvec.norm(dim=-1) < math.pi - 1e-3  # the sign of the axis is arbitrary at pi
    logged = so3.log(rots.to(dtype)).double()
    assert (logged - ref_rotvec)[away].abs().max() < 50 * TOL[dtype]
    exp_ref = torch.from_numpy(Rotation.from_rotvec(ref_rotvec.numpy()).as_matrix())
    assert (so3.exp(ref_rotvec.to(dtype)).double() - exp_ref).abs().max() < 10 * TOL[dtype]
    assert so3.log(rots.to(dtype)).dtype == dtype


@pytest.mark.parametrize("dtype", DTYPES)
def test_exp_log_round_trip_generic(dtype: torch.dtype) -> None:
    rots = so3.sample_uniform((4, 500), _gen(3), dtype=dtype)
    back = so3.exp(so3.log(rots))
    assert back.shape == rots.shape
    assert (back - rots).abs().max() < 10 * TOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "theta", [0.0, 1e-12, 1e-8, 1e-5, 1e-3, 0.5, 2.0, math.pi - 1e-3, math.pi - 1e-6, math.pi - 1e-9, math.pi]
)
def test_exp_log_near_zero_and_pi(dtype: torch.dtype, theta: float) -> None:
    axes = _unit_axes(200, torch.float64)
    rotvec = axes * theta
    rots = so3.exp(rotvec.to(dtype))
    logged = so3.log(rots)
    # exp(log(R)) == R
    assert (so3.exp(logged) - rots).abs().max() < 10 * TOL[dtype]
    # the angle is recovered, in [0, pi]
    ang = logged.double().norm(dim=-1)
    assert (ang - theta).abs().max() < 10 * TOL[dtype]
    assert (so3.angle(rots).double() - theta).abs().max() < 10 * TOL[dtype]
    # the rotation vector itself is recovered up to the antipodal ambiguity at exactly pi
    err = (logged.double() - rotvec).norm(dim=-1)
    if theta < math.pi - 1e-6:
        tol = 10 * TOL[dtype] if theta < math.pi - 1e-3 or dtype == torch.float64 else 1e-3
        assert err.max() < max(tol, 10 * TOL[dtype] * theta)
    else:
        err_flip = (logged.double() + rotvec).norm(dim=-1)
        assert torch.minimum(err, err_flip).max() < (1e-2 if dtype == torch.float32 else 1e-6)


def test_log_gradients_finite() -> None:
    axis = torch.tensor([0.3, -0.5, 0.8], dtype=torch.float64)
    axis = axis / axis.norm()
    for theta in [0.0, 1e-7, 1.0, math.pi - 1e-4]:
        v = (axis * theta).requires_grad_(True)
        out = so3.log(so3.exp(v))
        (out.sum() + so3.angle(so3.exp(v))).backward()
        assert torch.isfinite(v.grad).all()
        # d log(exp(v)) / dv = identity away from pi
        jac = torch.autograd.functional.jacobian(lambda x: so3.log(so3.exp(x)), axis * theta)
        torch.testing.assert_close(jac, torch.eye(3, dtype=torch.float64), rtol=0, atol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_geodesic_endpoints_and_speed(dtype: torch.dtype) -> None:
    r0 = so3.sample_uniform((300,), _gen(4), dtype=dtype)
    r1 = so3.sample_uniform((300,), _gen(5), dtype=dtype)
    zeros = torch.zeros(300, dtype=dtype)
    assert torch.equal(so3.geodesic(r0, r1, zeros), r0)  # exp(0) = I exactly
    assert (so3.geodesic(r0, r1, zeros + 1) - r1).abs().max() < 10 * TOL[dtype]
    d01 = so3.geodesic_distance(r0, r1)
    for t in [0.25, 0.5, 0.9]:
        rt = so3.geodesic(r0, r1, torch.full((300,), t, dtype=dtype))
        tol = 1e-4 if dtype == torch.float32 else 1e-9
        assert (so3.geodesic_distance(r0, rt) - t * d01).abs().max() < tol
        assert (so3.geodesic_distance(rt, r1) - (1 - t) * d01).abs().max() < tol
    # scalar t broadcasts
    assert so3.geodesic(r0, r1, 0.5).shape == r0.shape


def test_geodesic_distance_matches_scipy() -> None:
    r0 = so3.sample_uniform((500,), _gen(6), dtype=torch.float64)
    r1 = so3.sample_uniform((500,), _gen(7), dtype=torch.float64)
    ref = (Rotation.from_matrix(r0.numpy()).inv() * Rotation.from_matrix(r1.numpy())).magnitude()
    np.testing.assert_allclose(so3.geodesic_distance(r0, r1).numpy(), ref, atol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_quaternion_round_trips(dtype: torch.dtype) -> None:
    rots = so3.sample_uniform((1000,), _gen(8), dtype=torch.float64)
    # include angles near 0 and pi, where Shepperd's pivots change
    special = so3.exp(
        torch.cat([_unit_axes(20, torch.float64) * math.pi, _unit_axes(20, torch.float64) * 1e-9])
    )
    rots = torch.cat([rots, special]).to(dtype)
    q = so3.rotmat_to_quat(rots)
    assert (q[..., 0] >= 0).all()
    assert ((q.norm(dim=-1) - 1).abs() < 10 * TOL[dtype]).all()
    assert (so3.quat_to_rotmat(q) - rots).abs().max() < 10 * TOL[dtype]
    # against scipy (scalar-last), up to sign
    ref = torch.from_numpy(Rotation.from_matrix(rots.double().numpy()).as_quat()[:, [3, 0, 1, 2]])
    err = torch.minimum((q.double() - ref).norm(dim=-1), (q.double() + ref).norm(dim=-1))
    assert err.max() < 10 * TOL[dtype]
    # rotvec <-> quat
    rv = so3.log(rots)
    assert (so3.quat_to_rotvec(so3.rotvec_to_quat(rv)) - rv)[rv.norm(dim=-1) < 3.1].abs().max() < 10 * TOL[
        dtype
    ]
    assert (so3.quat_to_rotmat(so3.rotvec_to_quat(rv)) - rots).abs().max() < 10 * TOL[dtype]
    small = torch.tensor([[1e-9, -2e-9, 3e-10], [1e-4, 0.0, -1e-4]], dtype=dtype)
    assert (so3.quat_to_rotvec(so3.rotvec_to_quat(small)) - small).abs().max() < 1e-6 * small.abs().max()


def test_quat_to_rotmat_normalises_and_sign_invariant() -> None:
    q = torch.randn(100, 4, generator=_gen(9), dtype=torch.float64)
    r = so3.quat_to_rotmat(q)
    torch.testing.assert_close(so3.quat_to_rotmat(3.7 * q), r, rtol=0, atol=1e-14)
    torch.testing.assert_close(so3.quat_to_rotmat(-q), r, rtol=0, atol=1e-14)
    eye = torch.eye(3, dtype=torch.float64).expand(100, 3, 3)
    torch.testing.assert_close(r @ r.transpose(-1, -2), eye, rtol=0, atol=1e-14)
    ref = Rotation.from_quat(q[:, [1, 2, 3, 0]].numpy()).as_matrix()
    np.testing.assert_allclose(r.numpy(), ref, atol=1e-14)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sample_uniform_haar(dtype: torch.dtype) -> None:
    rots = so3.sample_uniform((20000,), _gen(10), dtype=dtype)
    assert rots.shape == (20000, 3, 3) and rots.dtype == dtype
    eye = torch.eye(3, dtype=dtype)
    assert (rots @ rots.transpose(-1, -2) - eye).abs().max() < 10 * TOL[dtype]
    assert (torch.linalg.det(rots) - 1).abs().max() < 10 * TOL[dtype]
    # E[R] = 0 under Haar; each entry has std 1/sqrt(3) -> standard error 0.004 here
    assert rots.mean(0).abs().max() < 0.02
    # angle density (1 - cos w)/pi, CDF (w - sin w)/pi
    ks = stats.kstest(so3.angle(rots).double().numpy(), lambda w: (w - np.sin(w)) / np.pi)
    assert ks.pvalue > 1e-3
    # same generator state -> same samples
    assert torch.equal(so3.sample_uniform((20000,), _gen(10), dtype=dtype), rots)


def _reference_angle_pdf(w: np.ndarray | float, sigma: float, num_terms: int = 400) -> np.ndarray:
    """The IGSO(3) angle density, written as in the literature (independent of flowbb's form)."""
    w = np.asarray(w, dtype=np.float64)[..., None]
    ls = np.arange(num_terms)
    terms = (2 * ls + 1) * np.exp(-ls * (ls + 1) * sigma**2 / 2) * np.sin((ls + 0.5) * w) / np.sin(w / 2)
    return (1 - np.cos(w[..., 0])) / np.pi * terms.sum(-1)


def _reference_cdf(sigma: float) -> tuple[np.ndarray, np.ndarray]:
    grid = np.linspace(1e-6, np.pi, 4001)
    cdf = integrate.cumulative_trapezoid(_reference_angle_pdf(grid, sigma), grid, initial=0.0)
    return grid, cdf


@pytest.mark.parametrize("sigma", [0.05, 0.3, 1.0, 2.5])
def test_igso3_angle_distribution(sigma: float) -> None:
    grid, cdf = _reference_cdf(sigma)
    assert abs(cdf[-1] - 1) < 1e-4  # the reference density integrates to one
    rots = so3.sample_igso3(sigma, (20000,), _gen(11), dtype=torch.float64)
    assert rots.shape == (20000, 3, 3)
    assert (torch.linalg.det(rots) - 1).abs().max() < 1e-12
    angles = so3.angle(rots).numpy()
    ks = stats.kstest(angles, lambda w: np.interp(w, grid, cdf))
    assert ks.pvalue > 1e-3, (sigma, ks)
    mean_ref = integrate.quad(lambda w: w * float(_reference_angle_pdf(w, sigma)), 1e-9, np.pi, limit=200)[0]
    stderr = angles.std() / np.sqrt(angles.size)
    assert abs(angles.mean() - mean_ref) < 5 * stderr, (sigma, angles.mean(), mean_ref)
    # isotropy: E[R] is a multiple of the identity
    mean_r = rots.mean(0)
    assert (mean_r - torch.diag(torch.diagonal(mean_r))).abs().max() < 0.02
    # flowbb's closed form agrees with the reference series
    w = torch.linspace(0.01, math.pi, 50, dtype=torch.float64)
    ref = _reference_angle_pdf(w.numpy(), sigma)
    np.testing.assert_allclose(so3.igso3_angle_density(w, sigma).numpy(), ref, atol=1e-9)


def test_igso3_per_element_sigma_and_generator() -> None:
    sigma = torch.tensor([[0.2], [1.5]], dtype=torch.float64)  # broadcast to (2, 20000)
    rots = so3.sample_igso3(sigma, (2, 20000), _gen(12), dtype=torch.float32)
    assert rots.shape == (2, 20000, 3, 3) and rots.dtype == torch.float32
    angles = so3.angle(rots).double().numpy()
    for row, s in enumerate([0.2, 1.5]):
        grid, cdf = _reference_cdf(s)
        ref_cdf = np.interp(np.sort(angles[row]), grid, cdf)
        assert stats.kstest(np.sort(angles[row]), lambda w, c=ref_cdf: c).pvalue > 1e-3
    again = so3.sample_igso3(sigma, (2, 20000), _gen(12), dtype=torch.float32)
    assert torch.equal(again, rots)
    zero = so3.sample_igso3(0.0, (3,), _gen(0), dtype=torch.float64)
    torch.testing.assert_close(zero, torch.eye(3, dtype=torch.float64).expand(3, 3, 3), rtol=0, atol=0)
    with pytest.raises(ValueError, match="sigma"):
        so3.sample_igso3(-1.0, (3,))
    with pytest.raises(ValueError, match="broadcast"):
        so3.sample_igso3(torch.ones(4), (3,))
