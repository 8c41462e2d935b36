"""FlowModel: the SE(3) flow-matching network (FrameFlow/FoldFlow trunk on FlashIPA or reference IPA).

``FlowModel(**cfg)(batch) -> {pred_rots, pred_trans, pred_psi, pred_torsions}`` with (float, Å outside the
network)::

    inputs   rots_t [B, L, 3, 3], trans_t [B, L, 3] (Å), t [B], res_mask [B, L] (0/1),
             residue_index [B, L] long, sc_trans [B, L, 3] (Å; zeros or absent: no self-conditioning)
    outputs  pred_rots [B, L, 3, 3], pred_trans [B, L, 3] (Å, the clean frames at t = 1),
             pred_torsions [B, L, T, 2] (unit (sin, cos) pairs, T = num_torsions: 1 for proteins (psi), 8 for RNA),
             pred_psi [B, L] (rad): the angle of the first pair (the protein psi);
             padded positions: identity rotation, zero translation, torsions 0, psi 0.

Layout: node embedder (sinusoidal time and chain-position encodings -> Linear) and edge embedder
(``type="flash"``: factorized kNN pair factors; ``type="ipa"``: dense pair tensor; both see the current and the
self-conditioning translations in Å), then ``num_blocks`` trunk blocks::

    IPA -> residual + LayerNorm -> sequence transformer (post-norm, fused attention with key-padding mask, on
    [s, skip(s_0)], residual through a zero-initialised projection) -> node transition -> backbone update
    (quaternion vector (1, b, c, d) normalised + translation, composed onto the frames, identity at padding)
    -> edge / factor transition (not after the last block)

With ``update_scale="one_minus_t"`` every block's update vector (b, c, d, translation) is multiplied by
``1 - t`` before it is composed: the linear path leaves ``x1 - x_t = (1 - t)(x1 - x0)`` and the geodesic leaves
``log(R_t^T R1) = (1 - t) log(R0^T R1)`` to cover, so the network's raw output has the scale of the velocity at
every t (output preconditioning, as EDM's ``c_out``): with the losses' ``1 / (1 - min(t, 0.9))`` scaling the
regression is equally conditioned at every t, and near t = 1 an untrained update cannot throw the frames
away from x_t. At t = 1 the prediction is x_t itself.

and a torsion head (``num_torsions`` (sin, cos) pairs; the protein psi head when 1: module name ``psi_head`` for
all sizes, so checkpoints written before RNA load). Inside the network translations are in nm (x 0.1): the predicted
frames are SE(3)-equivariant and the torsions are invariant. Nothing on the ``flash`` path builds an ``[L, L]`` tensor.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import nn

from flowbb.geometry import rigid, so3
from flowbb.model.attention import attention
from flowbb.model.edge_embed import (
    DenseEdgeEmbedder,
    DenseEdgeTransition,
    FactorizedEdgeEmbedder,
    FactorTransition,
)
from flowbb.model.features import chain_positions, sinusoidal_embedding
from flowbb.model.flash_ipa import FlashIPA
from flowbb.model.ipa import InvariantPointAttention

Tensor = torch.Tensor


@dataclass
class FlowModelConfig:
    """Flat FlowModel configuration (the keys of ``configs/model/*.yaml``).

    type: ``flash`` (FlashIPA + factorized kNN pair factors) or ``ipa`` (reference IPA + dense pair tensor).
    num_blocks: trunk blocks. c_s / c_z: node / pair channels. c_hidden, no_heads, no_qk_points, no_v_points:
    IPA sizes. z_factor_rank, knn_k, knn_chunk: pair factors (flash only; knn_chunk None = automatic).
    c_pos_emb, c_time_emb: node-embedder encodings. c_edge_feat: node projection / offset encoding width in the
    edge embedders; num_dist_bins, max_dist (Å): RBF distograms; max_offset, c_offset: kNN sequence-offset tags
    (flash only). c_edge_bias: node width fed to the edge/factor transition. seq_tfmr_heads / seq_tfmr_layers /
    c_skip: sequence transformer. trans_scale: Å -> network units. attention_backend: auto | sdpa | flash_attn | math (math: allow
    PyTorch's quadratic math kernel; the others run fused kernels only and raise where none applies).
    update_scale: ``one_minus_t`` (each block's frame update scaled by ``1 - t``, see the module docstring) or
    ``none`` (the update as the network outputs it, FrameFlow/FoldFlow). The default is the presets' value
    (``configs/model/*.yaml`` still spell it, so that it is stored in every checkpoint and ``model.update_scale=none``
    overrides it). seq_offset_freqs (flash only): frequencies of FlashIPA's exact sequence-offset logit bias
    (trigonometric polynomial of ``j - i`` per head; 0: none). seq_neighbors (flash only): distograms to the
    sequence neighbours ``i +- 1..n`` in the pair factors, beside the spatial kNN (0: none). Both default to 0,
    the meaning of configs written before they existed. attn_pair_channels (flash only): pair-factor channels per
    rank lifted into FlashIPA's attention (a learned projection from c_z; None: all c_z, the exact lifting).
    num_torsions: (sin, cos) pairs of the torsion head, the molecule type's
    (:attr:`flowbb.molecules.base.Molecule.num_torsions`: protein 1 (psi, the default, the meaning of configs
    written before RNA), RNA 8).
    """

    type: str = "flash"
    num_blocks: int = 5
    c_s: int = 256
    c_z: int = 128
    c_hidden: int = 128
    no_heads: int = 8
    no_qk_points: int = 8
    no_v_points: int = 12
    z_factor_rank: int = 2
    knn_k: int = 10
    knn_chunk: int | None = None
    c_pos_emb: int = 128
    c_time_emb: int = 128
    c_edge_feat: int = 64
    num_dist_bins: int = 22
    max_dist: float = 20.0
    max_offset: int = 32
    c_offset: int = 16
    c_edge_bias: int = 64
    seq_tfmr_heads: int = 4
    seq_tfmr_layers: int = 2
    c_skip: int = 64
    trans_scale: float = 0.1
    attention_backend: str = "auto"
    update_scale: str = "one_minus_t"
    seq_offset_freqs: int = 0
    seq_neighbors: int = 0
    attn_pair_channels: int | None = None
    num_torsions: int = 1

    def __post_init__(self) -> None:
        if self.update_scale not in ("one_minus_t", "none"):
            raise ValueError(f"FlowModelConfig.update_scale must be 'one_minus_t' or 'none', got {self.update_scale!r}")
        if self.type not in ("flash", "ipa"):
            raise ValueError(f"FlowModelConfig.type must be 'flash' or 'ipa', got {self.type!r}")
        if self.type == "ipa" and (self.seq_offset_freqs or self.seq_neighbors or self.attn_pair_channels):
            raise ValueError("FlowModelConfig: seq_offset_freqs, seq_neighbors and attn_pair_channels are flash-only "
                             "(the ipa model's dense pair features carry every sequence offset already)")
        if self.num_torsions < 1:
            raise ValueError(f"FlowModelConfig.num_torsions must be >= 1, got {self.num_torsions}")
        if self.num_blocks < 1:
            raise ValueError(f"FlowModelConfig.num_blocks must be >= 1, got {self.num_blocks}")
        if (self.c_s + self.c_skip) % self.seq_tfmr_heads != 0:
            raise ValueError(
                f"FlowModelConfig: c_s + c_skip = {self.c_s + self.c_skip} must be divisible by "
                f"seq_tfmr_heads = {self.seq_tfmr_heads}"
            )


class NodeEmbedder(nn.Module):
    """Initial node features ``[B, L, c_s]`` from sinusoidal encodings of the chain position (residue index
    from the first valid residue) and of the time ``t * 1000``, -> Linear, masked."""

    def __init__(self, c_s: int, c_pos: int, c_time: int) -> None:
        super().__init__()
        self.c_pos, self.c_time = c_pos, c_time
        self.linear = nn.Linear(c_pos + c_time, c_s)

    def forward(self, t: Tensor, residue_index: Tensor, mask: Tensor) -> Tensor:
        """Args: t ``[B]``, residue_index ``[B, L]``, mask ``[B, L]`` (float). Returns ``[B, L, c_s]``."""
        B, L = mask.shape
        pos = sinusoidal_embedding(chain_positions(residue_index, mask).to(mask.dtype), self.c_pos)
        time = sinusoidal_embedding(t.to(mask.dtype) * 1000.0, self.c_time)[:, None, :].expand(
            B, L, self.c_time
        )
        return self.linear(torch.cat([pos, time], dim=-1)) * mask[..., None]


class SeqTransformerLayer(nn.Module):
    """Post-norm transformer encoder layer on :func:`flowbb.model.attention.attention` (fused kernel, key-padding
    mask only, no ``[L, L]`` tensor): ``x <- LN(x + MHA(x)); x <- LN(x + FF(x))``."""

    def __init__(self, d_model: int, num_heads: int, d_ff: int | None = None, backend: str = "auto") -> None:
        super().__init__()
        if d_model % num_heads != 0:
            raise ValueError(f"SeqTransformerLayer: d_model {d_model} not divisible by num_heads {num_heads}")
        self.num_heads, self.backend = num_heads, backend
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        d_ff = d_ff or d_model
        self.ff = nn.Sequential(nn.Linear(d_model, d_ff), nn.ReLU(), nn.Linear(d_ff, d_model))
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, x: Tensor, key_mask: Tensor | None) -> Tensor:
        """Args: x ``[B, L, d]``; key_mask ``[B, L]`` bool or None. Returns ``[B, L, d]``."""
        B, L, d = x.shape
        H = self.num_heads
        q, k, v = self.qkv(x).view(B, L, 3, H, d // H).unbind(2)  # [B, L, H, dh] each
        a = attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), key_mask,
            scale=1.0 / math.sqrt(d // H), backend=self.backend,
        )  # fmt: skip
        x = self.norm1(x + self.out(a.transpose(1, 2).reshape(B, L, d)))
        return self.norm2(x + self.ff(x))


class NodeTransition(nn.Module):
    """``s <- LN(s + MLP(s))`` (3 linear layers, ReLU), masked."""

    def __init__(self, c_s: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(c_s, c_s), nn.ReLU(), nn.Linear(c_s, c_s), nn.ReLU(), nn.Linear(c_s, c_s)
        )
        self.norm = nn.LayerNorm(c_s)

    def forward(self, s: Tensor, mask: Tensor) -> Tensor:
        return self.norm(s + self.mlp(s)) * mask[..., None]


class BackboneUpdate(nn.Module):
    """Frame update from node features: Linear -> (b, c, d, tx, ty, tz); rotation from the quaternion
    (1, b, c, d) normalised, translation t (network units) in the local frame; composed as ``T <- T o T_upd``.
    Zero-initialised (identity update at init); the update is the identity at padded positions. An optional
    per-sample ``scale [B]`` multiplies (b, c, d, t) before composition (rotation angle ``2 atan(scale |bcd|)``)."""

    def __init__(self, c_s: int) -> None:
        super().__init__()
        self.linear = nn.Linear(c_s, 6)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(
        self, s: Tensor, rots: Tensor, trans: Tensor, mask: Tensor, scale: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Args: s ``[B, L, c_s]``, rots ``[B, L, 3, 3]``, trans ``[B, L, 3]``, mask ``[B, L]`` (float),
        scale ``[B]`` or None. Returns updated (rots, trans)."""
        upd = self.linear(s) * mask[..., None]
        if scale is not None:
            upd = upd * scale[:, None, None]
        quat = torch.cat([torch.ones_like(upd[..., :1]), upd[..., :3]], dim=-1)
        r_upd = so3.quat_to_rotmat(quat)
        return rigid.compose(rots, trans, r_upd, upd[..., 3:])


class TorsionHead(nn.Module):
    """Torsions from node features: residual MLP -> ``num_torsions`` (sin, cos) pairs (FoldFlow's psi head when
    ``num_torsions`` is 1: the same weights)."""

    def __init__(self, c_s: int, num_torsions: int = 1) -> None:
        super().__init__()
        self.num_torsions = num_torsions
        self.mlp = nn.Sequential(nn.Linear(c_s, c_s), nn.ReLU(), nn.Linear(c_s, c_s))
        self.out = nn.Linear(c_s, 2 * num_torsions)

    def forward(self, s: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Args: s ``[B, L, c_s]``, mask ``[B, L]``.

        Returns:
            (torsions ``[B, L, T, 2]``: unit (sin, cos), 0 at padded positions;
            angle of the first pair ``[B, L]`` in (-pi, pi], 0 at padded positions).
        """
        sc = self.out(torch.relu(s + self.mlp(s))).unflatten(-1, (self.num_torsions, 2))
        first = torch.atan2(sc[..., 0, 0], sc[..., 0, 1]) * mask
        norm = torch.linalg.vector_norm(sc, dim=-1, keepdim=True).clamp_min(1e-6)
        return sc / norm * mask[..., None, None], first


class FlowModel(nn.Module):
    """The flow-matching network; keyword arguments are the fields of :class:`FlowModelConfig`."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        known = {f.name for f in fields(FlowModelConfig)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise TypeError(f"FlowModel: unknown config keys {unknown} (known: {sorted(known)})")
        self.cfg = cfg = FlowModelConfig(**kwargs)
        self.node_embedder = NodeEmbedder(cfg.c_s, cfg.c_pos_emb, cfg.c_time_emb)
        ipa_dims = {
            "c_s": cfg.c_s, "c_z": cfg.c_z, "c_hidden": cfg.c_hidden, "no_heads": cfg.no_heads,
            "no_qk_points": cfg.no_qk_points, "no_v_points": cfg.no_v_points,
        }  # fmt: skip
        if cfg.type == "flash":
            self.edge_embedder: nn.Module = FactorizedEdgeEmbedder(
                cfg.c_s, cfg.c_z, rank=cfg.z_factor_rank, k=cfg.knn_k, c_p=cfg.c_edge_feat,
                num_bins=cfg.num_dist_bins, max_dist=cfg.max_dist, max_offset=cfg.max_offset,
                c_offset=cfg.c_offset, knn_chunk=cfg.knn_chunk, seq_neighbors=cfg.seq_neighbors,
            )  # fmt: skip
        else:
            self.edge_embedder = DenseEdgeEmbedder(
                cfg.c_s, cfg.c_z, c_p=cfg.c_edge_feat, num_bins=cfg.num_dist_bins, max_dist=cfg.max_dist
            )
        d_tfmr = cfg.c_s + cfg.c_skip
        self.blocks = nn.ModuleList()
        for b in range(cfg.num_blocks):
            block = nn.ModuleDict()
            if cfg.type == "flash":
                block["ipa"] = FlashIPA(
                    **ipa_dims, z_factor_rank=cfg.z_factor_rank, backend=cfg.attention_backend,
                    seq_offset_freqs=cfg.seq_offset_freqs, pair_channels=cfg.attn_pair_channels,
                )  # fmt: skip
            else:
                block["ipa"] = InvariantPointAttention(**ipa_dims)
            block["ipa_norm"] = nn.LayerNorm(cfg.c_s)
            block["skip_embed"] = nn.Linear(cfg.c_s, cfg.c_skip)
            block["seq_tfmr"] = nn.ModuleList(
                [
                    SeqTransformerLayer(d_tfmr, cfg.seq_tfmr_heads, backend=cfg.attention_backend)
                    for _ in range(cfg.seq_tfmr_layers)
                ]
            )
            block["post_tfmr"] = nn.Linear(d_tfmr, cfg.c_s)
            nn.init.zeros_(block["post_tfmr"].weight)
            nn.init.zeros_(block["post_tfmr"].bias)
            block["node_transition"] = NodeTransition(cfg.c_s)
            block["bb_update"] = BackboneUpdate(cfg.c_s)
            if b < cfg.num_blocks - 1:
                if cfg.type == "flash":
                    block["edge_transition"] = FactorTransition(
                        cfg.c_s, cfg.c_z, rank=cfg.z_factor_rank, c_bias=cfg.c_edge_bias
                    )
                else:
                    block["edge_transition"] = DenseEdgeTransition(cfg.c_s, cfg.c_z, c_bias=cfg.c_edge_bias)
            self.blocks.append(block)
        self.psi_head = TorsionHead(cfg.c_s, cfg.num_torsions)  # name kept for checkpoints written before RNA

    def config_dict(self) -> dict[str, Any]:
        """The flat config (as in ``configs/model/*.yaml``, without ``_target_``)."""
        return asdict(self.cfg)

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """See the module docstring for the batch keys and outputs."""
        for key in ("rots_t", "trans_t", "t", "res_mask", "residue_index"):
            if key not in batch:
                raise KeyError(f"FlowModel: batch has no '{key}' (keys: {sorted(batch)})")
        dtype = self.node_embedder.linear.weight.dtype
        mask = batch["res_mask"].to(dtype)
        B, L = mask.shape
        rots_in, trans_in = batch["rots_t"].to(dtype), batch["trans_t"].to(dtype)
        if rots_in.shape != (B, L, 3, 3) or trans_in.shape != (B, L, 3):
            raise ValueError(
                f"FlowModel: rots_t {tuple(rots_in.shape)} / trans_t {tuple(trans_in.shape)} do not match "
                f"res_mask {(B, L)}"
            )
        t = batch["t"].to(dtype).reshape(B)
        residue_index = batch["residue_index"].long()
        sc = batch.get("sc_trans")
        sc_trans = torch.zeros_like(trans_in) if sc is None else sc.to(dtype)
        valid = mask.bool()
        rots, trans_in = rigid.mask_frames(rots_in, trans_in, mask)
        sc_trans = sc_trans * mask[..., None]
        trans = trans_in * self.cfg.trans_scale  # network units
        key_mask = None if bool(valid.all()) else valid
        update_scale = (1.0 - t) if self.cfg.update_scale == "one_minus_t" else None  # [B]

        s0 = self.node_embedder(t, residue_index, mask)
        z = self.edge_embedder(s0, trans_in, sc_trans, residue_index, mask)
        z = z if isinstance(z, tuple) else (z,)
        s = s0
        ipa_kwargs = {"positions": chain_positions(residue_index, mask)} if self.cfg.type == "flash" else {}
        for block in self.blocks:
            s = block["ipa_norm"](s + block["ipa"](s, *z, rots, trans, mask, **ipa_kwargs)) * mask[..., None]
            x = torch.cat([s, block["skip_embed"](s0)], dim=-1)
            for layer in block["seq_tfmr"]:
                x = layer(x, key_mask)
            s = (s + block["post_tfmr"](x)) * mask[..., None]
            s = block["node_transition"](s, mask)
            rots, trans = block["bb_update"](s, rots, trans, mask, update_scale)
            if "edge_transition" in block:
                z = block["edge_transition"](s, *z, mask)
                z = z if isinstance(z, tuple) else (z,)
        torsions, psi = self.psi_head(s, mask)
        rots, trans = rigid.mask_frames(rots, trans * (mask[..., None] / self.cfg.trans_scale), mask)  # back to Å
        return {"pred_rots": rots, "pred_trans": trans, "pred_psi": psi, "pred_torsions": torsions}
