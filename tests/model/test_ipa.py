"""Reference IPA against a literal, loop-by-loop transcription of AlphaFold2 Algorithm 22."""

from __future__ import annotations

import math

import pytest
import torch

from flowbb.model.ipa import InvariantPointAttention


def _algorithm22(ipa: InvariantPointAttention, s, z, rots, trans, mask):
    """Single sample, explicit loops over heads, residues and points. s [L, c_s], z [L, L, c_z]."""
    L = s.shape[0]
    H, C, P, Pv = ipa.no_heads, ipa.c_hidden, ipa.no_qk_points, ipa.no_v_points
    q = ipa.linear_q(s).view(L, H, C)
    k = ipa.linear_k(s).view(L, H, C)
    v = ipa.linear_v(s).view(L, H, C)
    qp = ipa.linear_q_points(s).view(L, H, P, 3)
    kp = ipa.linear_k_points(s).view(L, H, P, 3)
    vp = ipa.linear_v_points(s).view(L, H, Pv, 3)
    glob = lambda i, x: rots[i] @ x + trans[i]
    w_l, w_c = math.sqrt(1 / 3), math.sqrt(2 / (9 * P))
    gamma = torch.nn.functional.softplus(ipa.head_weights)
    b = ipa.linear_b(z)  # [L, L, H]
    out = []
    for i in range(L):
        feats = []
        o_s, o_p, o_n, o_z = [], [], [], []
        for h in range(H):
            logits = []
            for j in range(L):
                d2 = sum(((glob(i, qp[i, h, p]) - glob(j, kp[j, h, p])) ** 2).sum() for p in range(P))
                a = w_l * (q[i, h] @ k[j, h] / math.sqrt(C) + b[i, j, h] - gamma[h] * w_c / 2 * d2)
                logits.append(a if mask[j] else torch.tensor(-1e300, dtype=s.dtype))
            a = torch.softmax(torch.stack(logits), 0)
            o_s.append(sum(a[j] * v[j, h] for j in range(L)))
            for p in range(Pv):
                g = sum(a[j] * glob(j, vp[j, h, p]) for j in range(L))
                loc = rots[i].T @ (g - trans[i])
                o_p.append(loc)
                o_n.append(torch.sqrt((loc**2).sum() + ipa.eps))
            o_z.append(sum(a[j] * z[i, j] for j in range(L)))
        feats = torch.cat([torch.cat(o_s), torch.cat(o_p), torch.stack(o_n), torch.cat(o_z)])
        out.append(ipa.linear_out(feats) * mask[i])
    return torch.stack(out)


def test_reference_ipa_matches_literal_algorithm22(rot_fn, chain_fn):
    torch.manual_seed(0)
    dtype = torch.float64
    ipa = InvariantPointAttention(
        c_s=12, c_z=5, c_hidden=4, no_heads=2, no_qk_points=3, no_v_points=2, zero_init=False
    ).to(dtype)
    with torch.no_grad():
        ipa.head_weights.copy_(torch.tensor([0.3, -0.8], dtype=dtype))
    g = torch.Generator().manual_seed(1)
    B, L = 2, 6
    s = torch.randn(B, L, 12, generator=g, dtype=dtype)
    z = torch.randn(B, L, L, 5, generator=g, dtype=dtype)
    rots = rot_fn((B, L), dtype, g)
    trans = chain_fn(B, L, dtype, g) * 0.1
    mask = torch.ones(B, L, dtype=dtype)
    mask[1, 4:] = 0
    out = ipa(s, z, rots, trans, mask)
    for b in range(B):
        ref = _algorithm22(ipa, s[b], z[b], rots[b], trans[b], mask[b])
        torch.testing.assert_close(out[b], ref, atol=1e-12, rtol=1e-10)
    assert (out[1, 4:] == 0).all()


def test_reference_ipa_zero_init_and_shape_check(rot_fn, chain_fn):
    ipa = InvariantPointAttention(c_s=12, c_z=5, c_hidden=4, no_heads=2, no_qk_points=3, no_v_points=2)
    g = torch.Generator().manual_seed(2)
    s = torch.randn(1, 7, 12, generator=g)
    z = torch.randn(1, 7, 7, 5, generator=g)
    rots, trans = rot_fn((1, 7), torch.float32, g), chain_fn(1, 7, torch.float32, g)
    out = ipa(s, z, rots, trans, torch.ones(1, 7))
    assert out.shape == (1, 7, 12) and (out == 0).all()
    with pytest.raises(ValueError, match="z must be"):
        ipa(s, z[:, :, :6], rots, trans, torch.ones(1, 7))
