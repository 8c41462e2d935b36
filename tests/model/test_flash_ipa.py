"""FlashIPA against the reference IPA: parity (outputs and gradients), SE(3) invariance, padding, no L x L."""

from __future__ import annotations

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from flowbb.model.edge_embed import (
    DenseEdgeEmbedder,
    DenseEdgeTransition,
    FactorizedEdgeEmbedder,
    FactorTransition,
)
from flowbb.model.flash_ipa import FlashIPA, FlashIPAConfig
from flowbb.model.ipa import InvariantPointAttention

DIMS = {"c_s": 32, "c_z": 8, "c_hidden": 16, "no_heads": 4, "no_qk_points": 4, "no_v_points": 6}
R = 2


def _modules(dtype: torch.dtype, seed: int = 0) -> tuple[InvariantPointAttention, FlashIPA]:
    torch.manual_seed(seed)
    ipa = InvariantPointAttention(**DIMS, zero_init=False).to(dtype)
    with torch.no_grad():  # non-trivial per-head point weights
        ipa.head_weights.copy_(torch.linspace(-1.0, 1.5, DIMS["no_heads"], dtype=dtype))
    return ipa, FlashIPA.from_ipa(ipa, R)


def _inputs(dtype, rot_fn, chain_fn, B=2, L=24, seed=1):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(B, L, DIMS["c_s"], generator=g, dtype=dtype)
    z1 = torch.randn(B, L, R, DIMS["c_z"], generator=g, dtype=dtype)
    z2 = torch.randn(B, L, R, DIMS["c_z"], generator=g, dtype=dtype)
    rots = rot_fn((B, L), dtype, g)
    trans = chain_fn(B, L, dtype, g) * 0.1  # network units (nm)
    mask = torch.ones(B, L, dtype=dtype)
    mask[1, 17:] = 0
    return s, z1, z2, rots, trans, mask


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / a.abs().max().clamp_min(1e-300)).item()


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
def test_flash_ipa_equals_reference_ipa_outputs_and_gradients(dtype, tol, rot_fn, chain_fn):
    ipa, flash = _modules(dtype)
    inputs = _inputs(dtype, rot_fn, chain_fn)
    g = torch.Generator().manual_seed(7)
    cot = torch.randn(2, 24, DIMS["c_s"], generator=g, dtype=dtype)
    results = []
    for model, dense in ((ipa, True), (flash, False)):
        s, z1, z2, rots, trans, mask = [x.clone().requires_grad_(x is not inputs[-1]) for x in inputs]
        if dense:
            z = torch.einsum("birc,bjrc->bijc", z1, z2)  # exactly rank R
            out = model(s, z, rots, trans, mask)
        else:
            out = model(s, z1, z2, rots, trans, mask)
        model.zero_grad(set_to_none=True)
        (out * cot).sum().backward()
        grads = {"s": s.grad, "z1": z1.grad, "z2": z2.grad, "rots": rots.grad, "trans": trans.grad}
        grads.update({n: p.grad for n, p in model.named_parameters()})
        results.append((out.detach(), grads))
    (out_ref, g_ref), (out_fl, g_fl) = results
    assert (out_fl[1, 17:] == 0).all() and (out_ref[1, 17:] == 0).all()
    assert _rel(out_ref, out_fl) <= tol
    for name, gr in g_ref.items():
        if name in ("linear_b.bias", "linear_k.bias"):
            # these add a per-row constant to the logits (softmax shift invariance): exact gradient zero
            scale = g_ref[name.replace("bias", "weight")].abs().max()
            assert gr.abs().max() <= tol * scale, name
            assert g_fl[name] is not None and g_fl[name].abs().max() <= tol * scale, name
            continue
        assert g_fl[name] is not None, name
        assert _rel(gr, g_fl[name]) <= tol, (name, _rel(gr, g_fl[name]))


def test_flash_ipa_runs_on_the_fused_kernel_with_padding(rot_fn, chain_fn):
    """Only the fused flash kernel allowed: unequal q/k/v widths or a dense mask would raise here."""
    _, flash = _modules(torch.float32)
    s, z1, z2, rots, trans, mask = _inputs(torch.float32, rot_fn, chain_fn)
    s.requires_grad_(True)
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
        out = flash(s, z1, z2, rots, trans, mask)
        out.sum().backward()
    assert torch.isfinite(s.grad).all()


def _pipeline(kind: str, dtype: torch.dtype):
    torch.manual_seed(3)
    if kind == "ipa":
        emb = DenseEdgeEmbedder(DIMS["c_s"], DIMS["c_z"], c_p=8, num_bins=10)
        ipa = InvariantPointAttention(**DIMS, zero_init=False)
        trn = DenseEdgeTransition(DIMS["c_s"], DIMS["c_z"], c_bias=8)
    else:
        emb = FactorizedEdgeEmbedder(
            DIMS["c_s"], DIMS["c_z"], rank=R, k=5, c_p=8, num_bins=10, c_offset=4, knn_chunk=8
        )
        ipa = FlashIPA(**DIMS, z_factor_rank=R, zero_init=False)
        trn = FactorTransition(DIMS["c_s"], DIMS["c_z"], rank=R, c_bias=8)
    mods = torch.nn.ModuleList([emb, ipa, trn]).to(dtype)

    def run(s, rots, trans, sc_trans, residue_index, mask):
        z = emb(s, trans, sc_trans, residue_index, mask)
        z = (z,) if kind == "ipa" else z
        z = trn(s, *z, mask)  # one edge/factor transition
        z = (z,) if kind == "ipa" else z
        return ipa(s, *z, rots, trans * 0.1, mask)

    return mods, run


def _structure(dtype, rot_fn, chain_fn, B=2, L=30, seed=5):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(B, L, DIMS["c_s"], generator=g, dtype=dtype)
    rots = rot_fn((B, L), dtype, g)
    trans = chain_fn(B, L, dtype, g)
    sc_trans = trans + torch.randn(B, L, 3, generator=g, dtype=dtype)
    residue_index = torch.arange(L).repeat(B, 1) + 5
    residue_index[:, 12:] += 7  # a chain break
    mask = torch.ones(B, L, dtype=dtype)
    if B > 1:
        mask[1, 21:] = 0
    return s, rots, trans, sc_trans, residue_index, mask


@pytest.mark.parametrize("kind", ["ipa", "flash"])
def test_se3_invariance_with_edge_embedder(kind, rot_fn, chain_fn):
    dtype = torch.float64
    _, run = _pipeline(kind, dtype)
    s, rots, trans, sc_trans, ri, mask = _structure(dtype, rot_fn, chain_fn)
    g = torch.Generator().manual_seed(11)
    Q = rot_fn((), dtype, g)
    t = torch.randn(3, generator=g, dtype=dtype) * 20.0
    out = run(s, rots, trans, sc_trans, ri, mask)
    out_moved = run(s, Q @ rots, trans @ Q.T + t, sc_trans @ Q.T + t, ri, mask)
    assert out.abs().max() > 1e-3  # non-trivial output
    assert (out - out_moved).abs().max() <= 1e-9 * max(1.0, out.abs().max().item())


@pytest.mark.parametrize("kind", ["ipa", "flash"])
def test_padding_changes_no_valid_output(kind, rot_fn, chain_fn):
    dtype = torch.float64
    _, run = _pipeline(kind, dtype)
    s, rots, trans, sc_trans, ri, mask = _structure(dtype, rot_fn, chain_fn, B=1, L=22)
    out = run(s, rots, trans, sc_trans, ri, mask)
    extra = 9
    g = torch.Generator().manual_seed(2)
    pad = lambda x, *tail: torch.cat([x, torch.randn(1, extra, *tail, generator=g, dtype=x.dtype)], dim=1)
    s_p = pad(s, DIMS["c_s"])
    rots_p = torch.cat([rots, rot_fn((1, extra), dtype, g)], dim=1)
    trans_p = torch.cat([trans, trans[:, :extra] + 0.5], dim=1)  # padding placed right next to real residues
    sc_p = torch.cat([sc_trans, sc_trans[:, :extra] + 0.5], dim=1)
    ri_p = torch.cat([ri, torch.arange(extra)[None] + 1], dim=1)
    mask_p = torch.cat([mask, torch.zeros(1, extra, dtype=dtype)], dim=1)
    out_p = run(s_p, rots_p, trans_p, sc_p, ri_p, mask_p)
    assert (out_p[:, 22:] == 0).all()
    assert (out_p[:, :22] - out).abs().max() <= 1e-12 * out.abs().max()
    # and inside a batch beside a longer chain
    s2, rots2, trans2, sc2, ri2, _ = _structure(dtype, rot_fn, chain_fn, B=1, L=22 + extra, seed=9)
    batch = [
        torch.cat([a, b])
        for a, b in (
            (s_p, s2),
            (rots_p, rots2),
            (trans_p, trans2),
            (sc_p, sc2),
            (ri_p, ri2),
            (mask_p, torch.ones_like(mask_p)),
        )
    ]
    out_b = run(*batch)
    assert (out_b[0, 22:] == 0).all()
    assert (out_b[0, :22] - out[0]).abs().max() <= 1e-12 * out.abs().max()


def test_flash_path_builds_no_quadratic_tensor(rot_fn, chain_fn, shape_recorder):
    """Every tensor made in forward and backward of embedder + transition + FlashIPA has at most one
    dimension of size L (L prime, so no feature width collides); the dense path does build L x L."""
    dtype = torch.float32
    L = 67
    for kind in ("flash", "ipa"):
        _mods, run = _pipeline(kind, dtype)
        s, rots, trans, sc_trans, ri, mask = _structure(dtype, rot_fn, chain_fn, B=2, L=L)
        s.requires_grad_(True)
        with shape_recorder() as rec:
            run(s, rots, trans, sc_trans, ri, mask).square().sum().backward()
        quadratic = [(op, sh) for op, sh in rec.shapes if sum(d == L for d in sh) >= 2]
        if kind == "flash":
            assert not quadratic, quadratic[:5]
            assert any("flash_attention" in op for op, _ in rec.shapes)  # the fused kernel ran
        else:
            assert quadratic


def test_zero_init_and_config(rot_fn, chain_fn):
    cfg = FlashIPAConfig(**DIMS, z_factor_rank=R)
    flash = FlashIPA.from_config(cfg)
    s, z1, z2, rots, trans, mask = _inputs(torch.float32, rot_fn, chain_fn)
    out = flash(s, z1, z2, rots, trans, mask)
    assert out.shape == s.shape and (out == 0).all()  # zero-initialised output projection
    ipa = InvariantPointAttention.from_config(cfg)
    assert {n: p.shape for n, p in ipa.named_parameters()} == {
        n: p.shape for n, p in flash.named_parameters()
    }
    with pytest.raises(ValueError, match="z1 must be"):
        flash(s, z1[:, :, :1], z2, rots, trans, mask)


def test_fully_padded_sample_is_zero_and_finite(rot_fn, chain_fn):
    _, flash = _modules(torch.float32)
    s, z1, z2, rots, trans, mask = _inputs(torch.float32, rot_fn, chain_fn)
    mask[0] = 0
    s.requires_grad_(True)
    out = flash(s, z1, z2, rots, trans, mask)
    out.sum().backward()
    assert (out[0] == 0).all() and torch.isfinite(out).all() and torch.isfinite(s.grad).all()


@pytest.mark.gpu
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.bfloat16, 3e-2)])
def test_flash_ipa_on_cuda_matches_float32_reference(dtype, tol, rot_fn, chain_fn):
    """On CUDA: float32 FlashIPA (SDPA kernels) and bf16 autocast (geometry kept in float32, kernel in bf16,
    flash-attn when installed and the head width allows) against the float32 reference IPA on the CPU."""
    ipa, flash = _modules(torch.float32)
    inputs = _inputs(torch.float32, rot_fn, chain_fn)
    s, z1, z2, rots, trans, mask = inputs
    ref = ipa(s, torch.einsum("birc,bjrc->bijc", z1, z2), rots, trans, mask)
    flash = flash.cuda()
    cuda_in = [x.cuda() for x in inputs]
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        out = flash(*cuda_in).float().cpu()
    assert (out[1, 17:] == 0).all()
    assert _rel(ref, out) <= tol


def test_sequence_offset_bias_is_the_exact_trigonometric_polynomial_of_the_offset(rot_fn, chain_fn):
    """seq_offset_freqs = F: the lifted q/k channels add sum_f A_hf cos(w_f (p_j - p_i)) + B_hf sin(w_f (p_j - p_i))
    to every logit (checked against the dense formula), only offsets matter (a shifted numbering gives the same
    output), and the bias changes the output once A, B are non-zero (they start at zero)."""
    dtype = torch.float64
    torch.manual_seed(0)
    flash = FlashIPA(**DIMS, z_factor_rank=R, zero_init=False, seq_offset_freqs=3).to(dtype)
    s, z1, z2, rots, trans, mask = _inputs(dtype, rot_fn, chain_fn)
    pos = torch.arange(24)[None].repeat(2, 1) + torch.tensor([[0], [7]])
    pos[:, 12:] += 5  # a gap in the numbering
    base = flash(s, z1, z2, rots, trans, mask, positions=pos)
    with torch.no_grad():
        flash.offset_bias.copy_(torch.randn(DIMS["no_heads"], 2, 3, dtype=dtype))
    q_off, k_off = flash.offset_lift(pos, s)  # [B, L, H, 2F]
    logits = torch.einsum("bihf,bjhf->bhij", q_off, k_off)
    off = (pos[:, None, :] - pos[:, :, None]).to(dtype)  # [B, i, j] = p_j - p_i
    ang = off[:, None, :, :, None] * flash.offset_omega.to(dtype)  # [B, 1, L, L, F]
    a, b = flash.offset_bias.unbind(1)  # [H, F]
    ref = (torch.cos(ang) * a[None, :, None, None] + torch.sin(ang) * b[None, :, None, None]).sum(-1)
    torch.testing.assert_close(logits, ref, atol=1e-9, rtol=0)
    out = flash(s, z1, z2, rots, trans, mask, positions=pos)
    assert (out - base).abs().max() > 1e-4
    shifted = flash(s, z1, z2, rots, trans, mask, positions=pos + 100)
    torch.testing.assert_close(shifted, out, atol=1e-9, rtol=0)
    assert flash.lifted_widths()[0] == FlashIPA(**DIMS, z_factor_rank=R).lifted_widths()[0] + 6
    with pytest.raises(ValueError, match="positions"):
        flash(s, z1, z2, rots, trans, mask)


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
def test_compact_pair_lifting_equals_reference_ipa_on_the_projected_factors(dtype, tol, rot_fn, chain_fn):
    """pair_channels = c_p: FlashIPA equals the reference IPA (c_z = c_p) over the dense tensor of the projected
    factors z_ij = sum_r P1 z1_ir (.) P2 z2_jr, and its lifted width is C + 3P + 1 + R c_p."""
    torch.manual_seed(0)
    c_p = 5
    flash = FlashIPA(**DIMS, z_factor_rank=R, zero_init=False, pair_channels=c_p).to(dtype)
    ipa = InvariantPointAttention(**{**DIMS, "c_z": c_p}, zero_init=False).to(dtype)
    shared = {k: v for k, v in flash.state_dict().items() if not k.startswith("pair_proj")}
    ipa.load_state_dict(shared)
    s, z1, z2, rots, trans, mask = _inputs(dtype, rot_fn, chain_fn)
    with torch.no_grad():
        z = torch.einsum("birc,bjrc->bijc", flash.pair_proj1(z1), flash.pair_proj2(z2))
    out_dense = ipa(s, z, rots, trans, mask)
    out_flash = flash(s, z1, z2, rots, trans, mask)
    valid = mask.bool()
    assert _rel(out_dense[valid], out_flash[valid]) <= tol
    C, P, Pv = DIMS["c_hidden"], DIMS["no_qk_points"], DIMS["no_v_points"]
    assert flash.lifted_widths() == (C + 3 * P + 1 + R * c_p, C + 3 * Pv + R * c_p)
    with pytest.raises(ValueError, match="pair_channels"):
        FlashIPA(**DIMS, pair_channels=0)


def test_compact_lifting_at_the_paper_dimensions_fits_the_fused_gpu_kernels():
    """The paper's FoldFlow dims (c_s 256, c_z 128, C 128, 8 heads, 8/12 points, rank 2): the exact lifting is
    409/420 wide (over flash-attn's and PyTorch's flash kernel's 256); pair_channels 40 with the 8-frequency
    sequence-offset bias is 249/244, 256 once padded to a multiple of 8."""
    paper = {"c_s": 256, "c_z": 128, "c_hidden": 128, "no_heads": 8, "no_qk_points": 8, "no_v_points": 12}
    assert FlashIPA(**paper, z_factor_rank=2).lifted_widths() == (409, 420)
    widths = FlashIPA(**paper, z_factor_rank=2, pair_channels=40, seq_offset_freqs=8).lifted_widths()
    assert widths == (249, 244)
    assert (max(widths) + 7) // 8 * 8 <= 256
