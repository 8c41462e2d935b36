"""SO(3): hat/vee, exp/log maps, geodesics, quaternions, uniform and IGSO(3) sampling.

Rotation matrices are ``[..., 3, 3]`` (act on column vectors), rotation vectors ``[..., 3]``
(axis times angle in radians, angle in ``[0, pi]`` from :func:`log`), quaternions ``[..., 4]``
in ``(w, x, y, z)`` order. Everything is batched over leading dimensions and works in float32
and float64; all randomness goes through an explicit ``torch.Generator``.

:func:`exp` and :func:`log` are roma's (``roma.rotvec_to_rotmat``, ``roma.rotmat_to_rotvec``); the geodesic
distance, quaternions in ``(w, x, y, z)`` order and IGSO(3) sampling are ours. ``scripts/compare_rotations.py``
measures both libraries (accuracy at 0 and pi in float32/float64, gradients, speed) and
``tests/geometry/test_so3_vs_roma.py`` holds the reasons for each choice. Everything is evaluated on safe inputs,
so that gradients stay finite (at exactly angle pi the log is discontinuous; its gradient is that of the branch
returned).
"""

from __future__ import annotations

import math

import roma
import torch

Tensor = torch.Tensor

# Angles below this use Taylor series in the quaternion conversions.
_SMALL_ANGLE = 1e-3
# IGSO(3): sigma at or below this samples the small-noise Gaussian limit (rotvec ~ N(0, sigma^2 I)).
_IGSO3_GAUSSIAN_SIGMA = 0.1
_IGSO3_GRID = 4096


def hat(v: Tensor) -> Tensor:
    """Skew-symmetric matrix of a vector: ``hat(v) @ x == cross(v, x)``.

    Args:
        v: ``[..., 3]``.
    Returns:
        ``[..., 3, 3]``.
    """
    if v.shape[-1] != 3:
        raise ValueError(f"hat: expected v[..., 3], got shape {tuple(v.shape)}")
    x, y, z = v.unbind(-1)
    zero = torch.zeros_like(x)
    return torch.stack(
        [
            torch.stack([zero, -z, y], dim=-1),
            torch.stack([z, zero, -x], dim=-1),
            torch.stack([-y, x, zero], dim=-1),
        ],
        dim=-2,
    )


def vee(m: Tensor) -> Tensor:
    """Inverse of :func:`hat` (reads the antisymmetric part ``(M - M^T)/2``).

    Args:
        m: ``[..., 3, 3]``.
    Returns:
        ``[..., 3]``.
    """
    _check_mat(m, "vee")
    a = 0.5 * (m - m.transpose(-1, -2))
    return torch.stack([a[..., 2, 1], a[..., 0, 2], a[..., 1, 0]], dim=-1)


def _check_mat(m: Tensor, name: str) -> None:
    if m.shape[-2:] != (3, 3):
        raise ValueError(f"{name}: expected a [..., 3, 3] tensor, got shape {tuple(m.shape)}")


def exp(rotvec: Tensor) -> Tensor:
    """Exponential map (Rodrigues): rotation vector -> rotation matrix, by ``roma.rotvec_to_rotmat``.

    ``R = I + sin(w)/w K + (1 - cos w)/w^2 K^2`` with ``K = hat(v)``, ``w = |v|`` (roma switches to ``I + K``
    below 1e-6 rad). roma replaced our own Rodrigues code after ``scripts/compare_rotations.py``: the same float32
    accuracy, ~1.5x faster; its gradient is less exact at small angles (relative ~6e-4 in float32 below 1e-3 rad,
    ~2e-6 in float64 below 1e-6 rad, ours 1e-6 / 1e-14), which no call site needs: the flow differentiates only
    :func:`log` (``tests/geometry/test_so3_vs_roma.py``).

    Args:
        rotvec: ``[..., 3]`` (any norm; angles beyond pi wrap around).
    Returns:
        ``[..., 3, 3]``.
    """
    if rotvec.shape[-1] != 3:
        raise ValueError(f"exp: expected rotvec[..., 3], got shape {tuple(rotvec.shape)}")
    return roma.rotvec_to_rotmat(rotvec)


def angle(rots: Tensor) -> Tensor:
    """Rotation angle in ``[0, pi]``, via ``atan2(|vee(R)|, (tr R - 1)/2)`` (accurate at 0 and pi).

    Args:
        rots: ``[..., 3, 3]``.
    Returns:
        ``[...]``.
    """
    _check_mat(rots, "angle")
    s = torch.linalg.vector_norm(vee(rots), dim=-1)
    c = 0.5 * (rots.diagonal(dim1=-2, dim2=-1).sum(-1) - 1.0)
    return torch.atan2(s, c)


def log(rots: Tensor) -> Tensor:
    """Logarithm map: rotation matrix -> rotation vector with angle in ``[0, pi]``, by ``roma.rotmat_to_rotvec``.

    roma goes through the unit quaternion (Markley's variant of Shepperd's method, ``w >= 0``) and
    ``v = 2 atan2(|xyz|, w) / |xyz| * xyz``: accurate at angle 0 and pi, and its gradient along the manifold is
    ``J_r^{-1}(v)`` up to the last ulp before pi. Our former formula (``w / sin w * vee(R)``, the symmetric part near
    pi) gave the same values but a wrong gradient within ~1e-6 rad of pi in float32 (the flow loss differentiates
    log), which is why roma replaced it (``tests/geometry/test_so3_vs_roma.py``).

    Args:
        rots: ``[..., 3, 3]`` (proper rotations).
    Returns:
        ``[..., 3]``.
    """
    _check_mat(rots, "log")
    return roma.rotmat_to_rotvec(rots)


def geodesic_distance(rots_a: Tensor, rots_b: Tensor) -> Tensor:
    """Angle of ``R_a^T R_b`` in ``[0, pi]``: ``atan2(|sum_k a_k x b_k| / 2, (sum(R_a * R_b) - 1) / 2)``.

    ``a_k``, ``b_k`` are the columns of ``R_a``, ``R_b``; ``sum_k a_k x b_k = R_a vee(R_a^T R_b - R_b^T R_a)`` has the
    norm ``2 sin(angle)`` and ``sum(R_a * R_b) = tr(R_a^T R_b)``, so no matrix product is formed. Accurate at 0 and
    at pi with finite gradients everywhere; ``roma.rotmat_geodesic_distance`` (``2 asin(|R_b - R_a|_F / 2 sqrt 2)``)
    is faster but loses ~1e-3 rad near pi in float32 and has non-finite gradients there, so we keep this one
    (``tests/geometry/test_so3_vs_roma.py``).

    Args:
        rots_a, rots_b: ``[..., 3, 3]`` (broadcast).
    Returns:
        ``[...]``.
    """
    _check_mat(rots_a, "geodesic_distance")
    _check_mat(rots_b, "geodesic_distance")
    rots_a, rots_b = torch.broadcast_tensors(rots_a, rots_b)
    s = 0.5 * torch.linalg.vector_norm(torch.linalg.cross(rots_a, rots_b, dim=-2).sum(-1), dim=-1)
    c = 0.5 * ((rots_a * rots_b).sum((-1, -2)) - 1.0)
    return torch.atan2(s, c)


def geodesic(rots_0: Tensor, rots_1: Tensor, t: Tensor | float) -> Tensor:
    """Point at time t on the geodesic ``R_0 exp(t log(R_0^T R_1))`` (t=0: R_0, t=1: R_1).

    Args:
        rots_0, rots_1: ``[..., 3, 3]``.
        t: scalar or ``[...]`` with the leading dims of the rotations (e.g. ``t[:, None]`` for
            per-batch times with ``[B, L, 3, 3]`` rotations).
    Returns:
        ``[..., 3, 3]``.
    """
    rel = log(rots_0.transpose(-1, -2) @ rots_1)
    t = torch.as_tensor(t, dtype=rel.dtype, device=rel.device)
    return rots_0 @ exp(t[..., None] * rel)


# ----------------------------------------------------------------------------------------------
# Quaternions (w, x, y, z)
# ----------------------------------------------------------------------------------------------


def quat_to_rotmat(quat: Tensor, eps: float = 1e-12) -> Tensor:
    """Quaternion ``(w, x, y, z)`` -> rotation matrix; the quaternion is normalised first.

    Args:
        quat: ``[..., 4]`` (any non-zero norm; q and -q give the same rotation).
    Returns:
        ``[..., 3, 3]``.
    """
    if quat.shape[-1] != 4:
        raise ValueError(f"quat_to_rotmat: expected quat[..., 4], got shape {tuple(quat.shape)}")
    q = quat / torch.linalg.vector_norm(quat, dim=-1, keepdim=True).clamp_min(eps)
    w, x, y, z = q.unbind(-1)
    return torch.stack(
        [
            torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            torch.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            torch.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        dim=-2,
    )


def rotmat_to_quat(rots: Tensor) -> Tensor:
    """Rotation matrix -> unit quaternion ``(w, x, y, z)`` with ``w >= 0`` (Shepperd's method).

    Of the four algebraically equivalent formulas, the one with the largest pivot
    (``1 + tr``, ``1 + 2 R_xx - tr``, ...) is used per element, so it is accurate everywhere.

    Args:
        rots: ``[..., 3, 3]``.
    Returns:
        ``[..., 4]``.
    """
    _check_mat(rots, "rotmat_to_quat")
    r = rots
    tr = r[..., 0, 0] + r[..., 1, 1] + r[..., 2, 2]
    pivots = torch.stack(
        [1 + tr, 1 + 2 * r[..., 0, 0] - tr, 1 + 2 * r[..., 1, 1] - tr, 1 + 2 * r[..., 2, 2] - tr], -1
    )  # 4 w^2, 4 x^2, 4 y^2, 4 z^2
    d21 = r[..., 2, 1] - r[..., 1, 2]
    d02 = r[..., 0, 2] - r[..., 2, 0]
    d10 = r[..., 1, 0] - r[..., 0, 1]
    s01 = r[..., 0, 1] + r[..., 1, 0]
    s02 = r[..., 0, 2] + r[..., 2, 0]
    s12 = r[..., 1, 2] + r[..., 2, 1]
    # Each candidate is 4*q_k * q (unnormalised), k the pivot component.
    cands = torch.stack(
        [
            torch.stack([pivots[..., 0], d21, d02, d10], -1),
            torch.stack([d21, pivots[..., 1], s01, s02], -1),
            torch.stack([d02, s01, pivots[..., 2], s12], -1),
            torch.stack([d10, s02, s12, pivots[..., 3]], -1),
        ],
        dim=-2,
    )
    best = pivots.argmax(-1)
    q = torch.gather(cands, -2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    q = q / torch.linalg.vector_norm(q, dim=-1, keepdim=True)
    return torch.where(q[..., :1] < 0, -q, q)


def rotvec_to_quat(rotvec: Tensor) -> Tensor:
    """Rotation vector -> unit quaternion ``(cos(w/2), sin(w/2) k)``.

    Args:
        rotvec: ``[..., 3]``.
    Returns:
        ``[..., 4]``.
    """
    if rotvec.shape[-1] != 3:
        raise ValueError(f"rotvec_to_quat: expected rotvec[..., 3], got shape {tuple(rotvec.shape)}")
    theta2 = (rotvec * rotvec).sum(-1)
    small = theta2 < _SMALL_ANGLE**2
    theta = torch.sqrt(torch.where(small, torch.ones_like(theta2), theta2))
    half_sinc = torch.where(small, 0.5 - theta2 / 48.0, torch.sin(0.5 * theta) / theta)  # sin(w/2)/w
    w = torch.where(small, 1.0 - theta2 / 8.0, torch.cos(0.5 * theta))
    return torch.cat([w[..., None], half_sinc[..., None] * rotvec], dim=-1)


def quat_to_rotvec(quat: Tensor, eps: float = 1e-12) -> Tensor:
    """Quaternion ``(w, x, y, z)`` (normalised here) -> rotation vector with angle in ``[0, pi]``.

    Args:
        quat: ``[..., 4]``.
    Returns:
        ``[..., 3]``.
    """
    if quat.shape[-1] != 4:
        raise ValueError(f"quat_to_rotvec: expected quat[..., 4], got shape {tuple(quat.shape)}")
    q = quat / torch.linalg.vector_norm(quat, dim=-1, keepdim=True).clamp_min(eps)
    q = torch.where(q[..., :1] < 0, -q, q)
    w, xyz = q[..., 0], q[..., 1:]
    n = torch.linalg.vector_norm(xyz, dim=-1)  # sin(w/2)
    small = n < _SMALL_ANGLE
    safe_n = torch.where(small, torch.ones_like(n), n)
    safe_w = torch.where(small, w, torch.ones_like(w))
    r2 = (n / safe_w) ** 2
    # 2 atan2(n, w) / n; for small n: 2/w (1 - (n/w)^2 / 3 + (n/w)^4 / 5).
    factor = torch.where(
        small, 2.0 / safe_w * (1.0 - r2 / 3.0 + r2 * r2 / 5.0), 2.0 * torch.atan2(n, w) / safe_n
    )
    return factor[..., None] * xyz


# ----------------------------------------------------------------------------------------------
# Sampling
# ----------------------------------------------------------------------------------------------


def sample_uniform(
    shape: tuple[int, ...] | torch.Size,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """Haar-uniform rotations, from normalised standard-Gaussian quaternions.

    Args:
        shape: leading shape.
        generator: optional ``torch.Generator`` on ``device``.
    Returns:
        ``[*shape, 3, 3]``.
    """
    q = torch.randn(*shape, 4, generator=generator, dtype=dtype, device=device)
    return quat_to_rotmat(q)


def igso3_angle_density(omega: Tensor, sigma: float, num_terms: int | None = None) -> Tensor:
    """Marginal density of the rotation angle under IGSO(3)(sigma), on ``[0, pi]``.

    ``f(w) = (1 - cos w)/pi * sum_l (2l+1) exp(-l(l+1) sigma^2/2) sin((l+1/2) w) / sin(w/2)``
    ``     = 2 sin(w/2)/pi * sum_l (2l+1) exp(-l(l+1) sigma^2/2) sin((l+1/2) w)`` (no 0/0 at w=0).
    Integrates to 1 over ``[0, pi]``; sigma -> inf gives the Haar angle density ``(1 - cos w)/pi``.

    Args:
        omega: angles ``[...]`` (radians).
        sigma: noise scale (> 0).
        num_terms: series length; default enough for terms down to ~1e-13.
    Returns:
        ``[...]`` density values (dtype of omega).
    """
    if sigma <= 0:
        raise ValueError(f"igso3_angle_density: sigma must be > 0, got {sigma}")
    if num_terms is None:
        num_terms = _igso3_num_terms(sigma)
    ls = torch.arange(num_terms, dtype=omega.dtype, device=omega.device)
    coef = (2 * ls + 1) * torch.exp(-ls * (ls + 1) * sigma**2 / 2)
    series = (coef * torch.sin((ls + 0.5) * omega[..., None])).sum(-1)
    return 2.0 * torch.sin(0.5 * omega) / math.pi * series


def _igso3_num_terms(sigma: float) -> int:
    # exp(-l(l+1) sigma^2 / 2) < 1e-13 once l(l+1) > 60 / sigma^2.
    return math.ceil(math.sqrt(60.0) / sigma) + 2


def _igso3_angle_grid(sigma: float) -> tuple[Tensor, Tensor]:
    """Angle grid and normalised CDF (float64, CPU) of the IGSO(3) angle for one sigma."""
    w_max = min(math.pi, 14.0 * sigma)  # beyond ~14 sigma the density is below 1e-40
    omega = torch.linspace(0.0, w_max, _IGSO3_GRID, dtype=torch.float64)
    pdf = igso3_angle_density(omega, sigma).clamp_min(0.0)
    steps = 0.5 * (pdf[1:] + pdf[:-1]) * (omega[1:] - omega[:-1])
    cdf = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(steps, 0)])
    return omega, cdf / cdf[-1]


def _inverse_cdf(omega: Tensor, cdf: Tensor, u: Tensor) -> Tensor:
    """Linear interpolation of the inverse of a monotone CDF table at uniforms ``u`` (float64, CPU)."""
    hi = torch.searchsorted(cdf, u, right=True).clamp(1, cdf.numel() - 1)
    lo = hi - 1
    c_lo, c_hi = cdf[lo], cdf[hi]
    frac = ((u - c_lo) / (c_hi - c_lo).clamp_min(1e-300)).clamp(0.0, 1.0)
    return omega[lo] + frac * (omega[hi] - omega[lo])


def sample_igso3(
    sigma: float | Tensor,
    shape: tuple[int, ...] | torch.Size,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """Samples of the isotropic Gaussian on SO(3), IGSO(3)(sigma), centred at the identity.

    The angle is drawn by inverse CDF (on a 4096-point grid, linear interpolation) of
    :func:`igso3_angle_density`, the axis uniformly on the sphere. For ``sigma <= 0.1`` the
    small-noise limit is used instead: rotation vector ``~ N(0, sigma^2 I)`` (the angle density
    differs from the series by a relative ``O(sigma^2 / 24)``). ``sigma == 0`` gives identities.
    The IGSO(3) tables are built once per distinct sigma value (cost O(#distinct * 4096 * 8/sigma)).

    Args:
        sigma: float or tensor broadcastable to ``shape`` (per-element noise scales, >= 0).
        shape: leading shape of the output.
        generator: optional ``torch.Generator`` on ``device``.
    Returns:
        ``[*shape, 3, 3]``.
    """
    shape = tuple(shape)
    sig = torch.as_tensor(sigma, dtype=torch.float64).detach().cpu()
    try:
        sig = torch.broadcast_to(sig, shape)
    except RuntimeError as err:
        raise ValueError(
            f"sample_igso3: sigma of shape {tuple(sig.shape)} does not broadcast to {shape}"
        ) from err
    if not torch.isfinite(sig).all() or (sig < 0).any():
        raise ValueError("sample_igso3: sigma must be finite and >= 0")

    # Draw every random number regardless of sigma, so samples depend only on the generator state.
    u = torch.rand(*shape, generator=generator, dtype=dtype, device=device)
    axis = torch.randn(*shape, 3, generator=generator, dtype=dtype, device=device)
    gauss = torch.randn(*shape, 3, generator=generator, dtype=dtype, device=device)

    u64 = u.detach().to(device="cpu", dtype=torch.float64)
    omega = torch.zeros(shape, dtype=torch.float64)
    series = sig > _IGSO3_GAUSSIAN_SIGMA
    if series.any():
        sig_series = sig[series]
        u_series = u64[series]
        om_series = torch.empty_like(u_series)
        values, inverse = torch.unique(sig_series, return_inverse=True)
        for j, s in enumerate(values.tolist()):
            sel = inverse == j
            grid, cdf = _igso3_angle_grid(s)
            om_series[sel] = _inverse_cdf(grid, cdf, u_series[sel])
        omega[series] = om_series

    axis = axis / torch.linalg.vector_norm(axis, dim=-1, keepdim=True).clamp_min(1e-12)
    rotvec_series = omega.to(device=axis.device, dtype=dtype)[..., None] * axis
    sig_dev = sig.to(device=axis.device, dtype=dtype)
    rotvec_gauss = sig_dev[..., None] * gauss
    rotvec = torch.where(series.to(axis.device)[..., None], rotvec_series, rotvec_gauss)
    return exp(rotvec)
