"""Priors, probability paths, couplings and training corruption for SE(3) flow matching over residue frames.

Conventions (DESIGN.md): t = 0 is noise, t = 1 is data; translations in Å; frames are rotations
``[B, L, 3, 3]`` and translations ``[B, L, 3]`` with a residue mask ``[B, L]``; padded positions hold the
identity rotation and a zero translation and never influence valid ones.

- Prior: translations N(0, I) * ``trans_scale`` Å centred per chain over valid residues; rotations
  Haar-uniform.
- Path: x_t = (1 - t) x_0 + t x_1; R_t = R_0 exp(t log(R_0^T R_1)) (geodesic).
- Couplings: ``base`` (independent), ``ot`` (minibatch OT within groups of chains with equal numbers of valid
  residues: Kabsch-align every noise sample to every data chain on translations, cost = aligned squared
  translation distance (in ``flow.losses.length_scale`` units) + ``flow.path.ot_rot_weight`` * squared rotation
  geodesic, Hungarian assignment; the chosen noise is permuted and rotated onto its data chain), ``sfm``
  (stochastic paths: Gaussian noise on x_t and IGSO(3) noise on R_t with sigma_t = sqrt(g^2 t (1 - t) +
  sigma_min^2), paired by OT when ``flow.path.sfm_ot``).
- Vector fields from clean predictions: v_trans = (x1_hat - x_t) / (1 - t) (Å per unit t),
  v_rot = log(R_t^T R1_hat) / (1 - t) (body-frame rotation vector per unit t).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from flowbb.flow.config import FlowConfig, PathConfig, flow_config_or_default
from flowbb.geometry import so3
from flowbb.geometry.align import kabsch
from flowbb.geometry.rigid import mask_frames

Tensor = torch.Tensor


# ----------------------------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------------------------


def _float_mask(res_mask: Tensor, dtype: torch.dtype) -> Tensor:
    if res_mask.dim() != 2:
        raise ValueError(f"res_mask: expected [B, L], got shape {tuple(res_mask.shape)}")
    return res_mask.to(dtype)


def _gen_device(generator: torch.Generator | None, device: torch.device) -> torch.device:
    """Device on which random numbers are drawn: the generator's (results then move to ``device``)."""
    return generator.device if generator is not None else device


def randn(
    shape: tuple[int, ...], generator: torch.Generator | None, dtype: torch.dtype, device: torch.device
) -> Tensor:
    """Standard normal draws made on the generator's device and moved to ``device``.

    Drawing on the generator's device makes a CPU generator give the same numbers whatever ``device`` is.
    """
    gd = _gen_device(generator, device)
    return torch.randn(*shape, generator=generator, dtype=dtype, device=gd).to(device)


def centre(x: Tensor, res_mask: Tensor) -> Tensor:
    """Subtract the per-chain centroid over valid residues and zero padding.

    Args:
        x: ``[B, L, 3]``.
        res_mask: ``[B, L]`` (0/1, float or bool).
    Returns:
        ``[B, L, 3]`` with ``sum_l mask * x == 0`` per chain and zeros at padding.
    """
    m = _float_mask(res_mask, x.dtype)[..., None]
    n = m.sum(-2, keepdim=True).clamp_min(1.0)
    return (x - (x * m).sum(-2, keepdim=True) / n) * m


def trans_vector_field(trans_t: Tensor, trans_1: Tensor, t: Tensor) -> Tensor:
    """Translation velocity towards a clean prediction: ``(x1_hat - x_t) / (1 - t)``.

    Args:
        trans_t, trans_1: ``[B, L, 3]`` (Å); t: ``[B]`` (< 1).
    Returns:
        ``[B, L, 3]`` (Å per unit time).
    """
    return (trans_1 - trans_t) / (1.0 - t)[:, None, None]


def rot_vector_field(rots_t: Tensor, rots_1: Tensor, t: Tensor) -> Tensor:
    """Rotation velocity towards a clean prediction: ``log(R_t^T R1_hat) / (1 - t)`` (body frame).

    Args:
        rots_t, rots_1: ``[B, L, 3, 3]``; t: ``[B]`` (< 1).
    Returns:
        ``[B, L, 3]`` rotation vectors per unit time (``dR/dt = R_t hat(v)``).
    """
    return so3.log(rots_t.transpose(-1, -2) @ rots_1) / (1.0 - t)[:, None, None]


def transport_cost(
    rots_0: Tensor,
    trans_0: Tensor,
    rots_1: Tensor,
    trans_1: Tensor,
    res_mask: Tensor,
    length_scale: float = 0.1,
    rot_weight: float = 1.0,
) -> Tensor:
    """Per-chain transport cost of given noise-data pairs (no alignment, no permutation).

    ``sum_l mask * (|length_scale (x0 - x1)|^2 + rot_weight * geodesic(R0, R1)^2)``.

    Args:
        rots_0, rots_1: ``[B, L, 3, 3]``; trans_0, trans_1: ``[B, L, 3]`` (Å); res_mask: ``[B, L]``.
    Returns:
        ``[B]``.
    """
    m = _float_mask(res_mask, trans_0.dtype)
    d_trans = ((length_scale * (trans_0 - trans_1)) ** 2).sum(-1)
    d_rot = so3.geodesic_distance(rots_0, rots_1) ** 2
    return ((d_trans + rot_weight * d_rot) * m).sum(-1)


def _pairwise_aligned_cost(
    r0: Tensor,
    x0: Tensor,
    r1: Tensor,
    x1: Tensor,
    length_scale: float,
    rot_weight: float,
    max_elems: int = 4_000_000,
) -> tuple[Tensor, Tensor]:
    """Cost matrix between m noise samples and m data chains of n residues each (compacted, no padding).

    Args:
        r0, r1: ``[m, n, 3, 3]``; x0, x1: ``[m, n, 3]`` (x0 centred).
    Returns:
        cost ``[m, m]`` (row: noise i, column: data j) and alignment rotations ``[m, m, 3, 3]`` with
        ``R_ij x0_i`` the noise i rotated onto data j (Kabsch on translations).
    """
    m, n = x0.shape[:2]
    rows = max(1, max_elems // max(1, m * n))
    costs, aligns = [], []
    for s in range(0, m, rows):
        xi = x0[s : s + rows]  # [r, n, 3]
        r = xi.shape[0]
        mobile = xi[:, None].expand(r, m, n, 3)
        target = x1[None].expand(r, m, n, 3)
        rot_align, _ = kabsch(mobile, target)  # [r, m, 3, 3]
        x_al = torch.einsum("ijab,inb->ijna", rot_align, xi)
        c_trans = ((length_scale * (x_al - target)) ** 2).sum((-1, -2))
        r_al = rot_align[:, :, None] @ r0[s : s + rows, None]  # [r, m, n, 3, 3]
        c_rot = (so3.geodesic_distance(r_al, r1[None]) ** 2).sum(-1)
        costs.append(c_trans + rot_weight * c_rot)
        aligns.append(rot_align)
    return torch.cat(costs, 0), torch.cat(aligns, 0)


@torch.no_grad()
def ot_coupling(
    rots_0: Tensor,
    trans_0: Tensor,
    rots_1: Tensor,
    trans_1: Tensor,
    res_mask: Tensor,
    length_scale: float = 0.1,
    rot_weight: float = 1.0,
) -> tuple[Tensor, Tensor]:
    """Minibatch optimal-transport pairing of prior samples with data chains.

    Chains are grouped by their number of valid residues (chains of different lengths cannot be paired).
    Within a group of m chains, noise sample i is Kabsch-aligned (rotation only; noise is centred) onto every
    data chain j on translations; cost_ij = aligned squared translation distance (``length_scale`` units)
    + ``rot_weight`` * sum of squared geodesics of the aligned rotations; the Hungarian assignment
    (``scipy.optimize.linear_sum_assignment``) decides which noise goes to which chain, and that noise is
    returned rotated onto its chain. Valid residues are matched in order, so groups may differ in where
    their padding is. A group of one chain reduces to aligning its noise to it.

    Args:
        rots_0: ``[B, L, 3, 3]`` prior rotations; trans_0: ``[B, L, 3]`` prior translations
            (Å, centred per chain).
        rots_1, trans_1: data frames, same shapes; res_mask: ``[B, L]``.
    Returns:
        (rots_0', trans_0'), the re-paired prior samples; padding identity / zero. The result is a rotated
        permutation of the input prior, so it is distributed as the prior.
    """
    valid = res_mask.bool()
    counts = valid.sum(-1)
    out_r = rots_0.clone()
    out_t = trans_0.clone()
    for n in torch.unique(counts).tolist():
        if n == 0:
            continue
        idx = torch.nonzero(counts == n).squeeze(-1)
        pos = torch.stack([torch.nonzero(valid[b]).squeeze(-1) for b in idx.tolist()])  # [m, n]
        r0, x0 = rots_0[idx[:, None], pos], trans_0[idx[:, None], pos]
        r1, x1 = rots_1[idx[:, None], pos], trans_1[idx[:, None], pos]
        cost, align = _pairwise_aligned_cost(r0, x0, r1, x1, length_scale, rot_weight)
        row, col = linear_sum_assignment(cost.detach().cpu().to(torch.float64).numpy())
        noise_for = np.empty(len(row), dtype=np.int64)
        noise_for[col] = row  # data j receives noise noise_for[j]
        src = torch.as_tensor(noise_for, device=rots_0.device)
        dst = torch.arange(len(row), device=rots_0.device)
        rot_al = align[src, dst]  # [m, 3, 3]
        new_t = torch.einsum("jab,jnb->jna", rot_al, x0[src])
        new_r = rot_al[:, None] @ r0[src]
        out_t[idx[:, None], pos] = new_t
        out_r[idx[:, None], pos] = new_r
    return mask_frames(out_r, out_t, res_mask)


# ----------------------------------------------------------------------------------------------
# Interpolant
# ----------------------------------------------------------------------------------------------


class Interpolant:
    """Prior, path, coupling and training corruption (model-agnostic; knows nothing of the network).

    Args:
        cfg: the flow config (``None``: defaults); reads ``cfg.path`` and, for the OT cost,
            ``cfg.losses.length_scale``.
    """

    def __init__(self, cfg: FlowConfig | None = None) -> None:
        self.cfg: FlowConfig = flow_config_or_default(cfg, "Interpolant")

    @property
    def path(self) -> PathConfig:
        """``cfg.path``: prior, coupling and path settings."""
        return self.cfg.path

    # -- time ----------------------------------------------------------------------------------

    def sample_t(
        self,
        batch_size: int,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """Training times in ``[min_t, 1)``: ``min_t + (1 - min_t) u``, u ~ Beta(t_skew, 1) (uniform at t_skew 1,
        drawn by inverse CDF, u = v^(1 / t_skew) with v uniform). Returns ``[batch_size]``."""
        device = torch.device(device) if device is not None else torch.device("cpu")
        gd = _gen_device(generator, device)
        u = torch.rand(batch_size, generator=generator, dtype=dtype, device=gd).to(device).pow(1.0 / self.path.t_skew)
        return self.path.min_t + (1.0 - self.path.min_t) * u

    def draw_self_condition(self, generator: torch.Generator | None = None) -> bool:
        """Whether this training step uses self-conditioning (probability ``self_condition_prob``)."""
        device = generator.device if generator is not None else None
        u = torch.rand((), generator=generator, device=device).item()
        return bool(u < self.path.self_condition_prob)

    # -- prior ---------------------------------------------------------------------------------

    def sample_prior(
        self, res_mask: Tensor, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32
    ) -> tuple[Tensor, Tensor]:
        """Prior frames.

        Args:
            res_mask: ``[B, L]``.
            generator: optional ``torch.Generator`` (any device; draws happen on its device).
        Returns:
            rots_0 ``[B, L, 3, 3]`` Haar-uniform (identity at padding), trans_0 ``[B, L, 3]``
            N(0, I) * trans_scale Å centred per chain over valid residues (zero at padding).
        """
        b, l = res_mask.shape
        device = res_mask.device
        gd = _gen_device(generator, device)
        rots = so3.sample_uniform((b, l), generator=generator, dtype=dtype, device=gd).to(device)
        trans = randn((b, l, 3), generator, dtype, device) * self.path.trans_scale
        trans = centre(trans, res_mask)
        return mask_frames(rots, trans, res_mask)

    # -- path ----------------------------------------------------------------------------------

    @staticmethod
    def interpolate(
        rots_0: Tensor, trans_0: Tensor, rots_1: Tensor, trans_1: Tensor, t: Tensor, res_mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Deterministic path at time t: geodesic rotations, linear translations.

        Args:
            rots_*: ``[B, L, 3, 3]``; trans_*: ``[B, L, 3]``; t: ``[B]``; res_mask: ``[B, L]``.
        Returns:
            (rots_t, trans_t), padding identity / zero.
        """
        tb = t.to(trans_0.dtype)
        trans_t = (1.0 - tb)[:, None, None] * trans_0 + tb[:, None, None] * trans_1
        rots_t = so3.geodesic(rots_0, rots_1, tb[:, None].expand(rots_0.shape[:2]))
        return mask_frames(rots_t, trans_t, res_mask)

    def sfm_sigma_trans(self, t: Tensor) -> Tensor:
        """Translation path noise std (Å): ``sqrt(g^2 t (1 - t) + sigma_min^2)``. ``t`` any shape."""
        c = self.path
        return torch.sqrt(c.sfm_g_trans**2 * t * (1.0 - t) + c.sfm_sigma_min_trans**2)

    def sfm_sigma_rots(self, t: Tensor) -> Tensor:
        """Rotation path noise IGSO(3) sigma (rad): ``sqrt(g^2 t (1 - t) + sigma_min^2)``. ``t`` any shape."""
        c = self.path
        return torch.sqrt(c.sfm_g_rots**2 * t * (1.0 - t) + c.sfm_sigma_min_rots**2)

    def add_path_noise(
        self,
        rots_t: Tensor,
        trans_t: Tensor,
        t: Tensor,
        res_mask: Tensor,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Stochastic-path noise: ``x_t + sigma_t eps`` (eps centred per chain) and ``R_t IGSO3(sigma_t)``.

        Args:
            rots_t: ``[B, L, 3, 3]``; trans_t: ``[B, L, 3]`` (Å); t: ``[B]``; res_mask: ``[B, L]``.
        Returns:
            noisy (rots_t, trans_t), padding identity / zero.
        """
        b, l = res_mask.shape
        dtype, device = trans_t.dtype, trans_t.device
        eps = centre(randn((b, l, 3), generator, dtype, device), res_mask)
        trans = trans_t + self.sfm_sigma_trans(t.to(dtype))[:, None, None] * eps
        sig_r = self.sfm_sigma_rots(t.to(torch.float64))[:, None].expand(b, l)
        noise = so3.sample_igso3(
            sig_r, (b, l), generator=generator, dtype=dtype, device=_gen_device(generator, device)
        ).to(device)
        return mask_frames(rots_t @ noise, trans, res_mask)

    # -- coupling + corruption -----------------------------------------------------------------

    def couple(
        self, rots_0: Tensor, trans_0: Tensor, rots_1: Tensor, trans_1: Tensor, res_mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Apply the configured coupling to prior samples (``base``: unchanged; ``ot`` / ``sfm`` with
        ``sfm_ot``: :func:`ot_coupling`). Shapes as in :func:`ot_coupling`."""
        c = self.path
        if c.coupling == "ot" or (c.coupling == "sfm" and c.sfm_ot):
            return ot_coupling(rots_0, trans_0, rots_1, trans_1, res_mask, self.cfg.losses.length_scale,
                               c.ot_rot_weight)
        return rots_0, trans_0

    def corrupt_frames(
        self,
        rots_1: Tensor,
        trans_1: Tensor,
        res_mask: Tensor,
        generator: torch.Generator | None = None,
        t: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Noise clean frames for one training step.

        Args:
            rots_1: ``[B, L, 3, 3]`` clean rotations; trans_1: ``[B, L, 3]`` clean translations (Å, centred);
            res_mask: ``[B, L]``; generator: optional; t: optional ``[B]`` (default: :meth:`sample_t`).
        Returns:
            dict with ``t [B]``, ``rots_0``, ``trans_0`` (coupled prior), ``rots_t``, ``trans_t``
            (path point, with stochastic-path noise for ``sfm``); padding identity / zero.
        """
        if rots_1.shape[:2] != res_mask.shape or trans_1.shape[:2] != res_mask.shape:
            raise ValueError(
                f"corrupt: rots_1 {tuple(rots_1.shape)} / trans_1 {tuple(trans_1.shape)} "
                f"do not match res_mask {tuple(res_mask.shape)}"
            )
        b = res_mask.shape[0]
        dtype, device = trans_1.dtype, trans_1.device
        if t is None:
            t = self.sample_t(b, generator, dtype=dtype, device=device)
        else:
            t = t.to(dtype=dtype, device=device)
            if t.shape != (b,):
                raise ValueError(f"corrupt: t must have shape [{b}], got {tuple(t.shape)}")
        rots_1, trans_1 = mask_frames(rots_1, trans_1, res_mask)
        rots_0, trans_0 = self.sample_prior(res_mask, generator, dtype=dtype)
        rots_0, trans_0 = self.couple(rots_0, trans_0, rots_1, trans_1, res_mask)
        rots_t, trans_t = self.interpolate(rots_0, trans_0, rots_1, trans_1, t, res_mask)
        if self.path.coupling == "sfm":
            rots_t, trans_t = self.add_path_noise(rots_t, trans_t, t, res_mask, generator)
        return {"t": t, "rots_0": rots_0, "trans_0": trans_0, "rots_t": rots_t, "trans_t": trans_t}

    def corrupt(
        self, batch: Mapping[str, Tensor], generator: torch.Generator | None = None, t: Tensor | None = None
    ) -> dict[str, Tensor]:
        """:meth:`corrupt_frames` on a batch dict holding ``rots_1``, ``trans_1`` and ``res_mask``.

        Returns:
            a new dict: the batch's entries plus ``t``, ``rots_0``, ``trans_0``, ``rots_t``, ``trans_t``.
        """
        for key in ("rots_1", "trans_1", "res_mask"):
            if key not in batch:
                raise KeyError(f"corrupt: batch has no '{key}' (keys: {sorted(batch)})")
        out = dict(batch)
        out.update(self.corrupt_frames(batch["rots_1"], batch["trans_1"], batch["res_mask"], generator, t))
        return out

    # -- vector fields -------------------------------------------------------------------------

    @staticmethod
    def vector_fields(
        rots_t: Tensor, trans_t: Tensor, rots_1: Tensor, trans_1: Tensor, t: Tensor
    ) -> tuple[Tensor, Tensor]:
        """(v_rot ``[B, L, 3]``, v_trans ``[B, L, 3]``) towards clean frames; see module docstring."""
        return rot_vector_field(rots_t, rots_1, t), trans_vector_field(trans_t, trans_1, t)
