"""Reference Invariant Point Attention (AlphaFold2 Supplementary Algorithm 22) with a dense pair tensor.

Quadratic in L (it materialises ``[B, H, L, L]`` logits and ``[B, L, L, H, 3]`` point differences):
it is the ``ipa`` baseline and the correctness oracle for :class:`flowbb.model.flash_ipa.FlashIPA`,
which shares its parameters (same names and shapes) through :class:`IPAParams`.

Per head h, with C scalar channels and P query/key points::

    logits_hij = w_L * ( q_hi . k_hj / sqrt(C) + b_hij - gamma_h * w_C / 2 * sum_p |T_i q_hip - T_j k_hjp|^2 )
    w_L = sqrt(1/3),  w_C = sqrt(2 / (9 P)),  gamma_h = softplus(head_weights_h),  b_hij = linear_b(z_ij)_h

Outputs per residue: attention-weighted scalar values, point values (taken back to the local frame), their
norms and pair values ``sum_j a_hij z_ij``; concatenated in that order and projected by ``linear_out``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from flowbb.geometry import rigid

Tensor = torch.Tensor

_SOFTPLUS_INV_1 = math.log(math.e - 1.0)  # softplus(x) = 1
# the projections of s that :meth:`IPAParams.project` applies, in the order of their fused output
_PROJECTIONS = ("linear_q", "linear_k", "linear_v", "linear_q_points", "linear_k_points", "linear_v_points")


@dataclass
class IPAConfig:
    """Sizes of (Flash)IPA.

    c_s: node channels; c_z: pair channels; c_hidden: scalar q/k/v channels per head;
    no_heads: heads H; no_qk_points: query/key points P; no_v_points: value points Pv;
    eps: added under the square root of the point-value norms; zero_init: zero-initialise ``linear_out``.
    """

    c_s: int
    c_z: int
    c_hidden: int
    no_heads: int
    no_qk_points: int
    no_v_points: int
    eps: float = 1e-8
    zero_init: bool = True


class IPAParams(nn.Module):
    """Parameters and the frame-dependent projections shared by IPA and FlashIPA.

    Parameters: ``linear_q``, ``linear_k``, ``linear_v`` (c_s -> H*C), ``linear_q_points``,
    ``linear_k_points`` (c_s -> H*P*3), ``linear_v_points`` (c_s -> H*Pv*3), ``linear_b`` (c_z -> H),
    ``head_weights`` [H] (gamma_h = softplus), ``linear_out`` (H*(C + 4 Pv + c_z) -> c_s).
    """

    def __init__(
        self,
        c_s: int,
        c_z: int,
        c_hidden: int,
        no_heads: int,
        no_qk_points: int,
        no_v_points: int,
        eps: float = 1e-8,
        zero_init: bool = True,
    ) -> None:
        super().__init__()
        for name, val in {
            "c_s": c_s,
            "c_z": c_z,
            "c_hidden": c_hidden,
            "no_heads": no_heads,
            "no_qk_points": no_qk_points,
            "no_v_points": no_v_points,
        }.items():
            if int(val) < 1:
                raise ValueError(f"IPA: {name} must be >= 1, got {val}")
        self.c_s, self.c_z, self.c_hidden = c_s, c_z, c_hidden
        self.no_heads, self.no_qk_points, self.no_v_points = no_heads, no_qk_points, no_v_points
        self.eps = eps
        H, C, P, Pv = no_heads, c_hidden, no_qk_points, no_v_points
        self.linear_q = nn.Linear(c_s, H * C)
        self.linear_k = nn.Linear(c_s, H * C)
        self.linear_v = nn.Linear(c_s, H * C)
        self.linear_q_points = nn.Linear(c_s, H * P * 3)
        self.linear_k_points = nn.Linear(c_s, H * P * 3)
        self.linear_v_points = nn.Linear(c_s, H * Pv * 3)
        self.linear_b = nn.Linear(c_z, H)
        self.head_weights = nn.Parameter(torch.full((H,), _SOFTPLUS_INV_1))
        self.linear_out = nn.Linear(H * (C + 4 * Pv + c_z), c_s)
        if zero_init:
            nn.init.zeros_(self.linear_out.weight)
            nn.init.zeros_(self.linear_out.bias)

    @classmethod
    def from_config(cls, cfg: IPAConfig):
        """Build from an :class:`IPAConfig` (or any object with the same fields)."""
        return cls(
            cfg.c_s,
            cfg.c_z,
            cfg.c_hidden,
            cfg.no_heads,
            cfg.no_qk_points,
            cfg.no_v_points,
            eps=cfg.eps,
            zero_init=cfg.zero_init,
        )

    @property
    def w_l(self) -> float:
        """w_L = sqrt(1/3)."""
        return math.sqrt(1.0 / 3.0)

    @property
    def w_c(self) -> float:
        """w_C = sqrt(2 / (9 P))."""
        return math.sqrt(2.0 / (9.0 * self.no_qk_points))

    def gamma(self) -> Tensor:
        """Per-head point weights gamma_h = softplus(head_weights) ``[H]``."""
        return nn.functional.softplus(self.head_weights)

    def project(self, s: Tensor, rots: Tensor, trans: Tensor) -> dict[str, Tensor]:
        """Scalar q/k/v and global-frame points.

        Args:
            s: ``[B, L, c_s]``; rots ``[B, L, 3, 3]``; trans ``[B, L, 3]`` (frames in the network's units).
        Returns:
            dict with q, k, v ``[B, L, H, C]``; q_pts, k_pts ``[B, L, H, P, 3]``; v_pts ``[B, L, H, Pv, 3]``,
            the points mapped to the global frame ``T_i p``.
        """
        B, L, _ = s.shape
        H, C, P, Pv = self.no_heads, self.c_hidden, self.no_qk_points, self.no_v_points
        r = rots[:, :, None, None]
        t = trans[:, :, None, None]
        # the six projections as one matrix product (one GEMM forward and two backward instead of six each)
        layers = [getattr(self, name) for name in _PROJECTIONS]
        weight = torch.cat([lin.weight for lin in layers])
        bias = torch.cat([lin.bias for lin in layers])
        q, k, v, q_pts, k_pts, v_pts = nn.functional.linear(s, weight, bias).split(
            [H * C, H * C, H * C, H * P * 3, H * P * 3, H * Pv * 3], dim=-1
        )
        return {
            "q": q.view(B, L, H, C),
            "k": k.view(B, L, H, C),
            "v": v.view(B, L, H, C),
            "q_pts": rigid.apply(r, t, q_pts.view(B, L, H, P, 3)),
            "k_pts": rigid.apply(r, t, k_pts.view(B, L, H, P, 3)),
            "v_pts": rigid.apply(r, t, v_pts.view(B, L, H, Pv, 3)),
        }

    def output_features(
        self, o: Tensor, o_pts: Tensor, o_pair: Tensor, rots: Tensor, trans: Tensor
    ) -> Tensor:
        """Concatenated attention results ``[B, L, H * (C + 3 Pv + Pv + c_z)]``: scalar values, point values in
        the local frame, their norms, pair values.

        Args:
            o: scalar results ``[B, L, H, C]``; o_pts: point results in the global frame ``[B, L, H, Pv, 3]``;
            o_pair: pair results ``[B, L, H, c_z]``; rots/trans: frames ``[B, L, 3, 3]``/``[B, L, 3]``
            (the same frame as the global points were made in).
        """
        B, L = o.shape[:2]
        local = rigid.apply_inverse(rots[:, :, None, None], trans[:, :, None, None], o_pts)
        norms = torch.sqrt((local * local).sum(-1) + self.eps)
        return torch.cat(
            [o.reshape(B, L, -1), local.reshape(B, L, -1), norms.reshape(B, L, -1), o_pair.reshape(B, L, -1)],
            dim=-1,
        )

    def project_out(self, feats: Tensor, mask: Tensor) -> Tensor:
        """``linear_out`` of :meth:`output_features`, exactly zero at padded rows. Returns ``[B, L, c_s]``."""
        out = self.linear_out(feats)
        return torch.where(mask.bool()[..., None], out, torch.zeros((), dtype=out.dtype, device=out.device))

    def output(
        self, o: Tensor, o_pts: Tensor, o_pair: Tensor, rots: Tensor, trans: Tensor, mask: Tensor
    ) -> Tensor:
        """Final projection of the attention results (shapes as in :meth:`output_features`, mask ``[B, L]``).
        Returns the node update ``[B, L, c_s]``, exactly zero at padded rows."""
        return self.project_out(self.output_features(o, o_pts, o_pair, rots, trans), mask)


def key_padding(mask: Tensor) -> Tensor:
    """Boolean key mask ``[B, L]`` from a residue mask; rows with no valid residue keep all keys
    (so softmax stays finite; their outputs are zeroed anyway)."""
    m = mask.bool()
    return m | ~m.any(dim=-1, keepdim=True)


class InvariantPointAttention(IPAParams):
    """Reference IPA over a dense pair tensor (quadratic memory). See the module docstring."""

    def forward(self, s: Tensor, z: Tensor, rots: Tensor, trans: Tensor, mask: Tensor) -> Tensor:
        """IPA update.

        Args:
            s: node features ``[B, L, c_s]``.
            z: pair features ``[B, L, L, c_z]``.
            rots: ``[B, L, 3, 3]``; trans: ``[B, L, 3]``.
            mask: residue mask ``[B, L]`` (bool or float).
        Returns:
            ``[B, L, c_s]`` (zeros at padded rows).
        """
        B, L, _ = s.shape
        if z.shape[:3] != (B, L, L) or z.shape[-1] != self.c_z:
            raise ValueError(f"IPA: z must be [B, L, L, c_z] = {(B, L, L, self.c_z)}, got {tuple(z.shape)}")
        p = self.project(s, rots, trans)
        C = self.c_hidden
        scalar = torch.einsum("bihc,bjhc->bhij", p["q"], p["k"]) / math.sqrt(C)
        bias = self.linear_b(z).permute(0, 3, 1, 2)  # [B, H, L, L]
        d2 = scalar.new_zeros(B, L, L, self.no_heads)
        for pt in range(self.no_qk_points):  # direct differences, one point at a time: [B, L, L, H, 3]
            diff = p["q_pts"][:, :, None, :, pt] - p["k_pts"][:, None, :, :, pt]
            d2 = d2 + (diff * diff).sum(-1)
        d2 = d2.permute(0, 3, 1, 2)  # [B, H, L, L]
        gamma = self.gamma()[None, :, None, None]
        logits = self.w_l * (scalar + bias - gamma * (self.w_c / 2.0) * d2)
        keys = key_padding(mask)[:, None, None, :]
        logits = logits.masked_fill(~keys, torch.finfo(logits.dtype).min)
        a = torch.softmax(logits, dim=-1)  # [B, H, L, L]
        o = torch.einsum("bhij,bjhc->bihc", a, p["v"])
        o_pts = torch.einsum("bhij,bjhpx->bihpx", a, p["v_pts"])
        o_pair = torch.einsum("bhij,bijc->bihc", a, z)
        return self.output(o, o_pts, o_pair, rots, trans, mask)
