"""Edge embedders and transitions: shapes, masking, self-conditioning gating, feature maps."""

from __future__ import annotations

import torch

from flowbb.model.edge_embed import (
    DenseEdgeEmbedder,
    DenseEdgeTransition,
    FactorizedEdgeEmbedder,
    FactorTransition,
)
from flowbb.model.features import chain_positions, rbf_distogram, sinusoidal_embedding


def _batch(chain_fn, B=2, L=26, c_s=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(B, L, c_s, generator=g)
    trans = chain_fn(B, L, torch.float32, g)
    ri = torch.arange(L).repeat(B, 1) + 100
    mask = torch.ones(B, L)
    mask[1, 18:] = 0
    return s, trans, ri, mask


def test_factorized_embedder_shapes_masking_and_sc_gate(chain_fn):
    s, trans, ri, mask = _batch(chain_fn)
    emb = FactorizedEdgeEmbedder(16, 8, rank=3, k=6, c_p=8, num_bins=8, c_offset=4)
    z1, z2 = emb(s, trans, torch.zeros_like(trans), ri, mask)
    assert z1.shape == z2.shape == (2, 26, 3, 8)
    assert (z1[1, 18:] == 0).all() and (z2[1, 18:] == 0).all()
    # no self-conditioning (zeros) is exactly the same as zeroing the sc feature block
    sc_block = emb.knn_features(trans, ri, mask)
    assert sc_block.shape == (2, 26, 6 * (8 + 4))
    # with self-conditioning the factors change; sc values at padded positions are ignored
    z1_sc, _ = emb(s, trans, trans + 1.0, ri, mask)
    assert (z1_sc[0] - z1[0]).abs().max() > 1e-4
    sc_pad = trans + 1.0
    sc_pad[1, 18:] = 123.0
    z1_sc2, _ = emb(s, trans, sc_pad, ri, mask)
    torch.testing.assert_close(z1_sc2, z1_sc)
    # a sample whose sc_trans is zero on all valid residues is treated as "no self-conditioning"
    sc_half = trans + 1.0
    sc_half[1] = 0.0
    z1_half, _ = emb(s, trans, sc_half, ri, mask)
    torch.testing.assert_close(z1_half[1], z1[1])
    torch.testing.assert_close(z1_half[0], z1_sc[0])


def test_factorized_embedder_is_independent_of_residue_numbering_offset(chain_fn):
    s, trans, ri, mask = _batch(chain_fn)
    emb = FactorizedEdgeEmbedder(16, 8, rank=2, k=4, c_p=8, num_bins=8, c_offset=4)
    a = emb(s, trans, trans, ri, mask)
    b = emb(s, trans, trans, ri + 37, mask)
    torch.testing.assert_close(a, b)


def test_transitions_keep_shapes_and_mask(chain_fn):
    s, trans, ri, mask = _batch(chain_fn)
    z1, z2 = torch.randn(2, 26, 2, 8), torch.randn(2, 26, 2, 8)
    n1, n2 = FactorTransition(16, 8, rank=2, c_bias=8)(s, z1, z2, mask)
    assert n1.shape == z1.shape and (n1[1, 18:] == 0).all() and (n2[1, 18:] == 0).all()
    dense = DenseEdgeEmbedder(16, 8, c_p=8, num_bins=10)(s, trans, torch.zeros_like(trans), ri, mask)
    assert dense.shape == (2, 26, 26, 8)
    assert (dense[1, 18:] == 0).all() and (dense[1, :, 18:] == 0).all()
    z = DenseEdgeTransition(16, 8, c_bias=8)(s, dense, mask)
    assert z.shape == dense.shape and (z[1, :, 18:] == 0).all()


def test_feature_maps():
    e = sinusoidal_embedding(torch.tensor([0.0, 3.0]), 8)
    assert e.shape == (2, 8)
    torch.testing.assert_close(e[0], torch.tensor([0.0] * 4 + [1.0] * 4))
    d = torch.tensor([0.0, 10.0, 20.0, 50.0], dtype=torch.float64)
    h = rbf_distogram(d, 5, 20.0)
    assert h.shape == (4, 5)
    assert h[0, 0] == 1 and h[2, -1] == 1 and h[3, -1] == 1 and h[3, :-1].max() < 1e-20  # saturating last bin
    ri = torch.tensor([[7, 8, 10, 0], [3, 4, 5, 6]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    assert chain_positions(ri, mask).tolist() == [[0, 1, 3, 0], [0, 1, 2, 3]]


def test_dense_embedder_blockwise_first_layer_equals_concatenation(chain_fn):
    s, trans, ri, mask = _batch(chain_fn)
    ri[:, 10:] += 5  # gap
    emb = DenseEdgeEmbedder(16, 8, c_p=8, num_bins=10).double()
    args = (s.double(), trans.double(), trans.double() + 1.0, ri, mask)
    ref = emb.mlp[0](emb.concat_features(*args))
    torch.testing.assert_close(emb.first_layer(*args), ref, atol=1e-12, rtol=1e-12)
