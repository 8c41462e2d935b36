"""FlashIPA: Invariant Point Attention as one softmax attention over lifted vectors (linear memory).

Same parameters (names and shapes) as :class:`flowbb.model.ipa.InvariantPointAttention`, so the two can
share a state dict. With the factorized pair tensor ``z_ij = sum_r z1_ir (.) z2_jr`` (elementwise over the
c_z channels) FlashIPA equals the reference IPA exactly. Per head h (C scalar channels, P points)::

    q~_i = [ q_i ,             vec(q_ip) ,        1 ,                           sqrt(1/3) vec_rc(W_hc z1_irc) ]
    k~_j = [ k_j / sqrt(3C) ,  w_h vec(k_jp) ,    -(w_h/2) sum_p |k_jp|^2 ,     vec_rc(z2_jrc) ]
    v~_j = [ v_j ,             vec(v_jp) ,        vec_rc(z2_jrc) ]
    w_h  = softplus(gamma_h) * sqrt(2 / (27 P))           (= gamma_h * w_L * w_C)

    q~_i . k~_j = w_L ( q.k/sqrt(C) + sum_c W_hc z_ijc - gamma_h w_C/2 sum_p |q_ip - k_jp|^2 ) + const_i

with points in the global frame. The row constant ``-(w_h/2) sum_p |q_ip|^2`` cancels in the softmax and is
dropped; the key-norm terms are summed into one channel (one ``1`` in q~ instead of P), which also carries the
per-head constant ``w_L * linear_b.bias_h`` of the reference logits (it cancels in the softmax too, but keeps
every parameter in the graph). The softmax scale is 1. After attention, the point values
return to the local frames (with their norms) and the pair output is ``sum_r z1_ir (.) (sum_j a_ij z2_jr)``.
Points are lifted relative to the per-sample centroid of the valid translations: distances, hence logits,
are unchanged, and float32 keeps more significant digits for large proteins.

Two options widen or narrow the lifted vectors:

* ``pair_channels = c_p`` (the channel-sum lifting in a smaller pair space): z1, z2 are first projected to
  ``c_p`` channels per rank, and the lifting above runs on the projected factors. The pair block then takes
  ``R c_p`` instead of ``R c_z`` channels of q~, k~ and v~, which brings the paper's dimensions (C 128, P 8/12,
  R 2, c_z 128: widths 409/420) under the 256 of the fused GPU kernels (c_p 40: 233/244). FlashIPA with
  ``c_p`` equals the reference IPA over the dense tensor of the projected factors (its test).
* ``seq_offset_freqs = F``: an exact sequence-offset bias ``sum_f A_hf cos(w_f (j - i)) + B_hf sin(w_f (j - i))``
  per head, ``2F`` more q/k channels (:meth:`FlashIPA.offset_lift`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from flowbb.model.attention import BACKENDS, attention, common_width
from flowbb.model.ipa import InvariantPointAttention, IPAConfig, IPAParams, key_padding

Tensor = torch.Tensor


@dataclass
class FlashIPAConfig(IPAConfig):
    """:class:`IPAConfig` plus ``z_factor_rank`` (R, pair-factor rank) and the attention ``backend``
    (``auto`` | ``sdpa`` | ``flash_attn``)."""

    z_factor_rank: int = 2
    backend: str = "auto"
    seq_offset_freqs: int = 0
    pair_channels: int | None = None


def offset_periods(num_freqs: int, shortest: float = 3.0, longest: float = 100.0) -> list[float]:
    """Periods (in residues) of the sequence-offset bias: geometric from ``shortest`` to ``longest``."""
    if num_freqs == 1:
        return [shortest]
    ratio = (longest / shortest) ** (1.0 / (num_freqs - 1))
    return [shortest * ratio**f for f in range(num_freqs)]


class FlashIPA(IPAParams):
    """Linear-memory IPA over factorized pair features. See the module docstring."""

    def __init__(
        self,
        c_s: int,
        c_z: int,
        c_hidden: int,
        no_heads: int,
        no_qk_points: int,
        no_v_points: int,
        z_factor_rank: int = 2,
        eps: float = 1e-8,
        zero_init: bool = True,
        backend: str = "auto",
        seq_offset_freqs: int = 0,
        pair_channels: int | None = None,
    ) -> None:
        # pair_channels: the factors z1, z2 [.., R, c_z] are first projected to [.., R, pair_channels] (one linear
        # map each, shared over the ranks), and the exact lifting runs in that smaller pair space (the
        # "channel-sum" lifting: sum_c W_hc z1'_ic z2'_jc). None: the exact lifting over all c_z channels.
        if pair_channels is not None and pair_channels < 1:
            raise ValueError(f"FlashIPA: pair_channels must be >= 1 or None, got {pair_channels}")
        c_pair = pair_channels or c_z
        super().__init__(c_s, c_pair, c_hidden, no_heads, no_qk_points, no_v_points, eps=eps, zero_init=zero_init)
        self.c_z_in = c_z
        self.pair_channels = pair_channels
        if pair_channels is not None:
            self.pair_proj1 = torch.nn.Linear(c_z, pair_channels, bias=False)
            self.pair_proj2 = torch.nn.Linear(c_z, pair_channels, bias=False)
        if seq_offset_freqs < 0:
            raise ValueError(f"FlashIPA: seq_offset_freqs must be >= 0, got {seq_offset_freqs}")
        # Exact sequence-offset bias: per head h, sum_f A_hf cos(w_f (j - i)) + B_hf sin(w_f (j - i)), lifted as
        # q~ += [A cos w p_i - B sin w p_i, A sin w p_i + B cos w p_i], k~ += [cos w p_j, sin w p_j] (no L x L).
        self.seq_offset_freqs = seq_offset_freqs
        if seq_offset_freqs:
            self.offset_bias = torch.nn.Parameter(torch.zeros(no_heads, 2, seq_offset_freqs))  # (A, B) per head
            omega = torch.tensor([2.0 * math.pi / p for p in offset_periods(seq_offset_freqs)])
            self.register_buffer("offset_omega", omega, persistent=False)
        if z_factor_rank < 1:
            raise ValueError(f"FlashIPA: z_factor_rank must be >= 1, got {z_factor_rank}")
        if backend not in BACKENDS:
            raise ValueError(f"FlashIPA: unknown backend {backend!r} ({'|'.join(BACKENDS)})")
        self.z_factor_rank = z_factor_rank
        self.backend = backend

    @classmethod
    def from_config(cls, cfg: FlashIPAConfig) -> FlashIPA:
        """Build from a :class:`FlashIPAConfig`."""
        return cls(
            cfg.c_s,
            cfg.c_z,
            cfg.c_hidden,
            cfg.no_heads,
            cfg.no_qk_points,
            cfg.no_v_points,
            z_factor_rank=cfg.z_factor_rank,
            eps=cfg.eps,
            zero_init=cfg.zero_init,
            backend=cfg.backend,
            seq_offset_freqs=cfg.seq_offset_freqs,
            pair_channels=cfg.pair_channels,
        )

    @classmethod
    def from_ipa(cls, ipa: InvariantPointAttention, z_factor_rank: int, backend: str = "auto") -> FlashIPA:
        """A FlashIPA holding a copy of a reference IPA's parameters (same dtype and device)."""
        p = next(ipa.parameters())
        m = cls(
            ipa.c_s,
            ipa.c_z,
            ipa.c_hidden,
            ipa.no_heads,
            ipa.no_qk_points,
            ipa.no_v_points,
            z_factor_rank=z_factor_rank,
            eps=ipa.eps,
            zero_init=False,
            backend=backend,
        )
        m = m.to(dtype=p.dtype, device=p.device)
        m.load_state_dict(ipa.state_dict())
        return m

    def lifted_widths(self) -> tuple[int, int]:
        """Head widths (q/k, v) of the lifted vectors before padding to a common width."""
        C, P, Pv, Rc = self.c_hidden, self.no_qk_points, self.no_v_points, self.z_factor_rank * self.c_z
        return C + 3 * P + 1 + Rc + 2 * self.seq_offset_freqs, C + 3 * Pv + Rc

    def offset_lift(self, positions: Tensor, like: Tensor) -> tuple[Tensor, Tensor]:
        """Query and key channels ``[B, L, H, 2F]`` of the sequence-offset bias for chain ``positions [B, L]``;
        their dot product is ``sum_f A_hf cos(w_f (p_j - p_i)) + B_hf sin(w_f (p_j - p_i))``."""
        B, L = positions.shape
        ang = positions.double()[..., None] * self.offset_omega.double()  # [B, L, F]; exact for long chains
        cos, sin = torch.cos(ang).to(like.dtype)[:, :, None], torch.sin(ang).to(like.dtype)[:, :, None]
        a, b = self.offset_bias.to(like.dtype).unbind(1)  # [H, F] each
        q_off = torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1)  # [B, L, H, 2F]
        k_off = torch.cat([cos, sin], dim=-1).expand(B, L, self.no_heads, -1)
        return q_off, k_off

    def lift(
        self, p: dict[str, Tensor], z1: Tensor, z2: Tensor, positions: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Lifted queries, keys and values ``[B, H, L, width]``, contiguous (zero-padded to the backend's common width).

        Args:
            p: :meth:`project` output (points in the global, centred frame).
            z1, z2: pair factors ``[B, L, R, c_z]``.
            positions: chain positions ``[B, L]`` (needed when ``seq_offset_freqs > 0``).
        """
        B, L, H, C = p["q"].shape
        P, Pv, R, cz = self.no_qk_points, self.no_v_points, self.z_factor_rank, self.c_z
        dqk, dv = self.lifted_widths()
        width = common_width(p["q"], dqk, dv, self.backend)
        ref = p["q"]

        # The pieces are [B, L, H, d] views; each concatenation writes one contiguous [B, H, L, D] tensor, the
        # layout the CPU flash kernel runs fastest on (transposed [B, L, H, D] inputs cost it ~8 % at L = 4096).
        def zeros(d: int) -> list[Tensor]:
            return [ref.new_zeros(B, L, H, d)] if d > 0 else []

        def heads_first(pieces: list[Tensor]) -> Tensor:
            return torch.cat([x.transpose(1, 2) for x in pieces], -1)

        w = (self.gamma() * math.sqrt(2.0 / (27.0 * P))).to(ref.dtype)[None, None, :, None]  # w_h
        k_pts = p["k_pts"].reshape(B, L, H, 3 * P)
        k_norm = (k_pts * k_pts).sum(-1, keepdim=True)  # [B, L, H, 1]
        b1 = torch.einsum("blrc,hc->blhrc", z1, self.linear_b.weight * math.sqrt(1.0 / 3.0))
        z2_flat = z2.reshape(B, L, 1, R * cz).expand(B, L, H, R * cz)
        # w_L * linear_b.bias: a per-head logit constant (cancels in the softmax, as in the reference IPA), carried
        # in the key-norm channel so that every parameter takes part in the graph (DDP without unused parameters)
        b_head = (self.linear_b.bias * math.sqrt(1.0 / 3.0)).to(ref.dtype)[None, None, :, None]
        q_off, k_off = [], []
        if self.seq_offset_freqs:
            if positions is None:
                raise ValueError("FlashIPA: seq_offset_freqs > 0 needs the chain positions")
            q_o, k_o = self.offset_lift(positions, ref)
            q_off, k_off = [q_o], [k_o]
        q_t = heads_first(
            [
                p["q"],
                p["q_pts"].reshape(B, L, H, 3 * P),
                ref.new_ones(B, L, H, 1),
                b1.reshape(B, L, H, R * cz),
            ]
            + q_off
            + zeros(width - dqk)
        )
        k_t = heads_first(
            [p["k"] * (1.0 / math.sqrt(3.0 * C)), k_pts * w, k_norm * (-0.5 * w) + b_head, z2_flat]
            + k_off
            + zeros(width - dqk)
        )
        v_t = heads_first([p["v"], p["v_pts"].reshape(B, L, H, 3 * Pv), z2_flat] + zeros(width - dv))
        return q_t, k_t, v_t

    def forward(
        self,
        s: Tensor,
        z1: Tensor,
        z2: Tensor,
        rots: Tensor,
        trans: Tensor,
        mask: Tensor,
        positions: Tensor | None = None,
    ) -> Tensor:
        """FlashIPA update.

        Args:
            s: node features ``[B, L, c_s]``.
            z1, z2: pair factors ``[B, L, R, c_z]`` (``z_ij = sum_r z1_ir * z2_jr``).
            rots: ``[B, L, 3, 3]``; trans: ``[B, L, 3]``.
            mask: residue mask ``[B, L]`` (bool or float).
            positions: chain positions ``[B, L]`` (residue numbers; only offsets matter), for the
                sequence-offset bias (``seq_offset_freqs > 0``).
        Returns:
            ``[B, L, c_s]``, exactly zero at padded rows.
        """
        B, L, _ = s.shape
        R, cz = self.z_factor_rank, self.c_z
        for name, f in (("z1", z1), ("z2", z2)):
            if f.shape != (B, L, R, self.c_z_in):
                raise ValueError(
                    f"FlashIPA: {name} must be [B, L, R, c_z] = {(B, L, R, self.c_z_in)}, got {tuple(f.shape)}"
                )
        if self.pair_channels is not None:
            z1, z2 = self.pair_proj1(z1), self.pair_proj2(z2)  # [B, L, R, pair_channels]
        H, C, Pv = self.no_heads, self.c_hidden, self.no_v_points
        keys = key_padding(mask)  # [B, L] bool
        # Under autocast the geometry (points, lifting, local frames) stays in full precision; only the
        # attention kernel runs in the autocast dtype.
        dev = s.device.type
        amp_dtype = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else None
        with torch.autocast(dev, enabled=False):
            if amp_dtype is not None:
                s, z1, z2, rots, trans = (x.float() for x in (s, z1, z2, rots, trans))
            m = mask.to(s.dtype)
            centre = (trans * m[..., None]).sum(1, keepdim=True) / m.sum(1)[:, None, None].clamp_min(1.0)
            trans_c = trans - centre  # [B, L, 3]; logits are translation invariant
            q_t, k_t, v_t = self.lift(self.project(s, rots, trans_c), z1, z2, positions)  # [B, H, L, width]
            if amp_dtype is not None:
                q_t, k_t, v_t = (x.to(amp_dtype) for x in (q_t, k_t, v_t))
            key_mask = None if bool(keys.all()) else keys
            out = attention(
                q_t,
                k_t,
                v_t,
                key_mask,
                scale=1.0,
                backend=self.backend,
            )  # [B, H, L, >= dv]
            del q_t, k_t, v_t
            out = out.transpose(1, 2).to(s.dtype)  # [B, L, H, *]
            dv = self.lifted_widths()[1]
            # split (not slicing): its backward assembles the output gradient in one buffer
            o, o_pts, o_z2, _ = out.split([C, 3 * Pv, R * cz, out.shape[-1] - dv], dim=-1)
            o_pts = o_pts.reshape(B, L, H, Pv, 3)
            o_pair = (z1[:, :, None] * o_z2.reshape(B, L, H, R, cz)).sum(dim=3)  # [B, L, H, c_z]
            feats = self.output_features(o, o_pts, o_pair, rots, trans_c)
        return self.project_out(feats, mask)
