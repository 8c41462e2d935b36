"""Pair-feature embedders and transitions.

* :class:`DenseEdgeEmbedder` / :class:`DenseEdgeTransition`: dense ``z [B, L, L, c_z]`` (FoldFlow/FrameFlow
  style: relative sequence position + CA distograms of the current and self-conditioning translations +
  cross-concatenated node features -> MLP). Quadratic; for the ``ipa`` baseline.
* :class:`FactorizedEdgeEmbedder` / :class:`FactorTransition`: per-residue factors ``z1, z2 [B, L, R, c_z]``
  (``z_ij = sum_r z1_ir (.) z2_jr``) from node features, sinusoidal sequence positions and kNN distograms.
  No ``[L, L, c]`` tensor is ever built; the neighbour search is chunked (O(L k) memory). For FlashIPA.

Translations are given in Å (distogram ranges are in Å); both embedders are SE(3) invariant.
"""

from __future__ import annotations

import torch
from torch import nn

from flowbb.geometry.neighbors import knn
from flowbb.model.features import chain_positions, rbf_distogram, sinusoidal_embedding

Tensor = torch.Tensor


def _mlp(d_in: int, d_hidden: int, d_out: int, n_hidden: int = 2) -> nn.Sequential:
    layers: list[nn.Module] = []
    d = d_in
    for _ in range(n_hidden):
        layers += [nn.Linear(d, d_hidden), nn.ReLU()]
        d = d_hidden
    layers.append(nn.Linear(d, d_out))
    return nn.Sequential(*layers)


def _cross_concat(x: Tensor) -> Tensor:
    """``[B, L, c]`` -> ``[B, L, L, 2c]`` with entry (i, j) = [x_i, x_j]."""
    B, L, c = x.shape
    return torch.cat([x[:, :, None, :].expand(B, L, L, c), x[:, None, :, :].expand(B, L, L, c)], dim=-1)


def _pairwise_dist(x: Tensor) -> Tensor:
    """Exact pairwise distances ``[B, L, L]`` from ``[B, L, 3]`` (gradient-safe at 0)."""
    diff = x[:, :, None, :] - x[:, None, :, :]
    d2 = (diff * diff).sum(-1)
    return torch.sqrt(d2.clamp_min(torch.finfo(x.dtype).tiny)) * (d2 > 0)


class DenseEdgeEmbedder(nn.Module):
    """Dense pair features ``z [B, L, L, c_z]`` (quadratic memory).

    Features per pair (i, j): projected node features of i and j (``c_p`` each), a sinusoidal encoding of
    the sequence offset ``r_j - r_i`` (``c_p``, linearly mixed), RBF distograms of ``|x_i - x_j|`` for the
    current and the self-conditioning translations (``num_bins`` each) -> MLP -> LayerNorm, masked.

    The MLP's first layer acts on the concatenation of these features; it is evaluated block by block
    (node terms per residue, offset terms per distinct offset, distogram terms per pair), which is the
    same function without materialising the concatenated ``[B, L, L, 3 c_p + 2 num_bins]`` tensor.
    """

    def __init__(self, c_s: int, c_z: int, c_p: int = 64, num_bins: int = 22, max_dist: float = 20.0) -> None:
        super().__init__()
        self.c_p, self.num_bins, self.max_dist = c_p, num_bins, max_dist
        self.linear_s_p = nn.Linear(c_s, c_p)
        self.linear_relpos = nn.Linear(c_p, c_p)
        self.mlp = _mlp(3 * c_p + 2 * num_bins, c_z, c_z, n_hidden=2)
        self.layer_norm = nn.LayerNorm(c_z)

    def first_layer(
        self, s: Tensor, trans: Tensor, sc_trans: Tensor, residue_index: Tensor, mask: Tensor
    ) -> Tensor:
        """``mlp[0]`` applied to the concatenated features ``[p_i, p_j, relpos_ij, dist_ij, sc_dist_ij]``,
        ``[B, L, L, c_z]``."""
        cp, nb = self.c_p, self.num_bins
        lin = self.mlp[0]
        w_i, w_j, w_rel, w_d, w_sc = lin.weight.split([cp, cp, cp, nb, nb], dim=1)
        p = self.linear_s_p(s)  # [B, L, c_p]
        h_i = p @ w_i.T  # [B, L, c_z]
        h_j = p @ w_j.T
        offset = residue_index[:, None, :] - residue_index[:, :, None]  # [B, L, L]
        lo = int(offset.min())
        table = torch.arange(lo, int(offset.max()) + 1, device=s.device).to(s.dtype)
        rel = self.linear_relpos(sinusoidal_embedding(table, cp)) @ w_rel.T  # [n_offsets, c_z]
        h = rel[offset - lo]  # [B, L, L, c_z]
        h = h + h_i[:, :, None, :] + h_j[:, None, :, :] + lin.bias
        h = h + rbf_distogram(_pairwise_dist(trans), nb, self.max_dist) @ w_d.T
        m = mask.to(s.dtype)
        return h + rbf_distogram(_pairwise_dist(sc_trans * m[..., None]), nb, self.max_dist) @ w_sc.T

    def forward(
        self, s: Tensor, trans: Tensor, sc_trans: Tensor, residue_index: Tensor, mask: Tensor
    ) -> Tensor:
        """Pair features.

        Args:
            s: node features ``[B, L, c_s]``; trans, sc_trans: CA translations ``[B, L, 3]`` in Å
            (sc_trans zeros when there is no self-conditioning); residue_index ``[B, L]`` long; mask ``[B, L]``.
        Returns:
            z ``[B, L, L, c_z]``, zero where either residue is padding.
        """
        m = mask.to(s.dtype)
        h = self.first_layer(s, trans, sc_trans, residue_index, mask)
        for layer in list(self.mlp)[1:]:
            h = layer(h)
        z = self.layer_norm(h)
        return z * (m[:, :, None] * m[:, None, :])[..., None]

    def concat_features(
        self, s: Tensor, trans: Tensor, sc_trans: Tensor, residue_index: Tensor, mask: Tensor
    ) -> Tensor:
        """The concatenated per-pair features ``[B, L, L, 3 c_p + 2 num_bins]`` (reference form; tests)."""
        m = mask.to(s.dtype)
        cross = _cross_concat(self.linear_s_p(s))
        offset = residue_index[:, None, :] - residue_index[:, :, None]
        relpos = self.linear_relpos(sinusoidal_embedding(offset.to(s.dtype), self.c_p))
        dist = rbf_distogram(_pairwise_dist(trans), self.num_bins, self.max_dist)
        sc_dist = rbf_distogram(_pairwise_dist(sc_trans * m[..., None]), self.num_bins, self.max_dist)
        return torch.cat([cross, relpos, dist, sc_dist], dim=-1)


class DenseEdgeTransition(nn.Module):
    """Dense pair update: ``z <- LayerNorm(z + Linear(h))``, ``h = x + MLP(x)``, ``x = [z_ij, s'_i, s'_j]``."""

    def __init__(self, c_s: int, c_z: int, c_bias: int = 64) -> None:
        super().__init__()
        self.linear_s = nn.Linear(c_s, c_bias)
        d = c_z + 2 * c_bias
        self.trunk = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, d), nn.ReLU())
        self.final = nn.Linear(d, c_z)
        self.layer_norm = nn.LayerNorm(c_z)

    def forward(self, s: Tensor, z: Tensor, mask: Tensor) -> Tensor:
        """Args: s ``[B, L, c_s]``, z ``[B, L, L, c_z]``, mask ``[B, L]``. Returns z ``[B, L, L, c_z]`` (masked)."""
        m = mask.to(s.dtype)
        x = torch.cat([z, _cross_concat(self.linear_s(s))], dim=-1)
        h = x + self.trunk(x)
        z = self.layer_norm(z + self.final(h))
        return z * (m[:, :, None] * m[:, None, :])[..., None]


class FactorizedEdgeEmbedder(nn.Module):
    """Per-residue pair factors ``z1, z2 [B, L, R, c_z]`` with kNN distograms (linear memory).

    Features of residue i: a projection of its node features (``c_p``), a sinusoidal encoding of its chain
    position (``c_p``), and for the current and (separately) the self-conditioning translations: for each of
    its ``k`` nearest neighbours j (itself and padding excluded; slots in sequence order) an RBF distogram of
    ``|x_i - x_j|`` (``num_bins``) tagged with a learned embedding of the clamped sequence offset
    ``r_j - r_i`` (``c_offset``), flattened over the k neighbours (missing neighbours are zero). The
    self-conditioning block is zero for samples whose sc_trans is all zero (no self-conditioning).
    With ``seq_neighbors = n > 0`` a second block per translation set gives, for each sequence neighbour
    ``i + o`` (``o = -n..-1, 1..n`` along the chain), an RBF distogram of ``|x_i - x_{i+o}|`` and a flag that the
    residue numbering is contiguous there (``r_{i+o} - r_i = o``): the chain neighbours are always seen, also at
    mid t where they are rarely among the spatial kNN. Missing neighbours (chain ends, padding) are zero.
    -> MLP -> ``2 R c_z`` -> two factors, each LayerNorm-ed over c_z, zero at padded residues.
    """

    def __init__(
        self,
        c_s: int,
        c_z: int,
        rank: int = 2,
        k: int = 10,
        c_p: int = 64,
        num_bins: int = 16,
        max_dist: float = 20.0,
        max_offset: int = 32,
        c_offset: int = 16,
        c_hidden: int | None = None,
        knn_chunk: int | None = None,
        seq_neighbors: int = 0,
    ) -> None:
        super().__init__()
        if k < 1 or rank < 1:
            raise ValueError(f"FactorizedEdgeEmbedder: k and rank must be >= 1, got k={k}, rank={rank}")
        if seq_neighbors < 0:
            raise ValueError(f"FactorizedEdgeEmbedder: seq_neighbors must be >= 0, got {seq_neighbors}")
        self.c_z, self.rank, self.k, self.seq_neighbors = c_z, rank, k, seq_neighbors
        self.c_p, self.num_bins, self.max_dist = c_p, num_bins, max_dist
        self.max_offset, self.knn_chunk = max_offset, knn_chunk
        self.linear_s_p = nn.Linear(c_s, c_p)
        self.offset_embed = nn.Embedding(2 * max_offset + 1, c_offset)
        d_in = 2 * c_p + 2 * k * (num_bins + c_offset) + 2 * 2 * seq_neighbors * (num_bins + 1)
        c_hidden = c_hidden or 2 * rank * c_z
        self.mlp = _mlp(d_in, c_hidden, 2 * rank * c_z, n_hidden=2)
        self.norm1 = nn.LayerNorm(c_z)
        self.norm2 = nn.LayerNorm(c_z)

    def knn_features(self, x: Tensor, residue_index: Tensor, mask: Tensor) -> Tensor:
        """kNN distogram block ``[B, L, k * (num_bins + c_offset)]`` of points ``x [B, L, 3]`` (Å)."""
        B, L, _ = x.shape
        idx, dist, nbr_mask = knn(x, mask, self.k, chunk_size=self.knn_chunk)
        # Slots in sequence order of the neighbours (missing ones last), not in distance order: two
        # neighbours at (nearly) equal distance would otherwise swap slots under a rounding-level motion.
        order = torch.argsort(idx.masked_fill(~nbr_mask, L), dim=-1)
        idx, dist, nbr_mask = (torch.gather(a, -1, order) for a in (idx, dist, nbr_mask))
        r_nbr = torch.gather(residue_index, 1, idx.reshape(B, L * self.k)).reshape(B, L, self.k)
        offset = (r_nbr - residue_index[:, :, None]).clamp(
            -self.max_offset, self.max_offset
        ) + self.max_offset
        feats = torch.cat(
            [rbf_distogram(dist, self.num_bins, self.max_dist), self.offset_embed(offset).to(x.dtype)], dim=-1
        )  # [B, L, k, nb + c_off]
        feats = feats * nbr_mask[..., None].to(x.dtype)
        return feats.reshape(B, L, -1)

    def seq_neighbor_features(self, x: Tensor, residue_index: Tensor, mask: Tensor) -> Tensor:
        """Sequence-neighbour block ``[B, L, 2 n (num_bins + 1)]`` of points ``x [B, L, 3]`` (Å)."""
        L = x.shape[1]
        n = self.seq_neighbors
        valid = mask.bool()
        blocks = []
        for o in [*range(-n, 0), *range(1, n + 1)]:
            j = torch.arange(L, device=x.device) + o
            inside = (j >= 0) & (j < L)
            jc = j.clamp(0, L - 1)
            ok = valid & valid[:, jc] & inside  # [B, L]
            diff = x[:, jc] - x
            d = torch.sqrt((diff * diff).sum(-1).clamp_min(torch.finfo(x.dtype).tiny))
            contiguous = (residue_index[:, jc] - residue_index == o).to(x.dtype)
            f = torch.cat([rbf_distogram(d, self.num_bins, self.max_dist), contiguous[..., None]], dim=-1)
            blocks.append(f * ok[..., None].to(x.dtype))
        return torch.cat(blocks, dim=-1)

    def forward(
        self, s: Tensor, trans: Tensor, sc_trans: Tensor, residue_index: Tensor, mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Pair factors.

        Args:
            s: node features ``[B, L, c_s]``; trans, sc_trans: ``[B, L, 3]`` in Å (sc_trans zeros when none);
            residue_index ``[B, L]`` long; mask ``[B, L]``.
        Returns:
            z1, z2 ``[B, L, R, c_z]``, zero at padded residues.
        """
        B, L, _ = s.shape
        m = mask.to(s.dtype)
        pos = sinusoidal_embedding(chain_positions(residue_index, mask).to(s.dtype), self.c_p)
        sc = sc_trans * m[..., None]
        has_sc = (sc.detach().abs().sum(dim=(1, 2)) > 0).to(s.dtype)[:, None, None]  # [B, 1, 1]
        pieces = [
            pos,
            self.knn_features(trans, residue_index, mask),
            self.knn_features(sc, residue_index, mask) * has_sc,
        ]
        if self.seq_neighbors:
            pieces += [
                self.seq_neighbor_features(trans, residue_index, mask),
                self.seq_neighbor_features(sc, residue_index, mask) * has_sc,
            ]
        # mlp[0] on [linear_s_p(s), geometric features] in two products: the geometric features carry no
        # gradient, so the backward computes no input gradient for their (k (num_bins + c_offset) wide) block
        first = self.mlp[0]
        w_node, w_geo = first.weight.split([self.c_p, first.in_features - self.c_p], dim=1)
        h = nn.functional.linear(torch.cat(pieces, dim=-1), w_geo, first.bias)
        h = h + nn.functional.linear(self.linear_s_p(s), w_node)
        z = self.mlp[1:](h).view(B, L, 2, self.rank, self.c_z)
        m4 = m[:, :, None, None]
        return self.norm1(z[:, :, 0]) * m4, self.norm2(z[:, :, 1]) * m4


class FactorTransition(nn.Module):
    """Factor update (no dense tensor): ``x = [vec z1_i, vec z2_i, s'_i]``, ``h = MLP(x)`` (two ReLU layers of
    width ``c_hidden``), ``z_a <- LayerNorm(z_a + Linear(h)_a)`` for both factors, masked."""

    def __init__(
        self, c_s: int, c_z: int, rank: int = 2, c_bias: int = 64, c_hidden: int | None = None
    ) -> None:
        super().__init__()
        self.c_z, self.rank = c_z, rank
        c_hidden = c_hidden or 2 * c_z
        self.linear_s = nn.Linear(c_s, c_bias)
        self.mlp = _mlp(2 * rank * c_z + c_bias, c_hidden, 2 * rank * c_z, n_hidden=2)
        self.norm1 = nn.LayerNorm(c_z)
        self.norm2 = nn.LayerNorm(c_z)

    def forward(self, s: Tensor, z1: Tensor, z2: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Args: s ``[B, L, c_s]``, z1/z2 ``[B, L, R, c_z]``, mask ``[B, L]``. Returns updated z1, z2 (masked)."""
        B, L = s.shape[:2]
        x = torch.cat([z1.reshape(B, L, -1), z2.reshape(B, L, -1), self.linear_s(s)], dim=-1)
        d = self.mlp(x).view(B, L, 2, self.rank, self.c_z)
        m4 = mask.to(s.dtype)[:, :, None, None]
        return self.norm1(z1 + d[:, :, 0]) * m4, self.norm2(z2 + d[:, :, 1]) * m4
