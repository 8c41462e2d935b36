"""Attention backends: SDPA path against a naive softmax, widths, masks, errors; flash-attn on CUDA."""

from __future__ import annotations

import pytest
import torch

from flowbb.model import attention as attn_mod
from flowbb.model.attention import attention, common_width


def _naive(q, k, v, key_mask, scale):
    logits = torch.einsum("bhid,bhjd->bhij", q, k) * scale
    if key_mask is not None:
        logits = logits.masked_fill(~key_mask[:, None, None, :], float("-inf"))
    return torch.softmax(logits, -1) @ v


@pytest.mark.parametrize("dqk,dv", [(16, 16), (13, 21), (24, 7)])
@pytest.mark.parametrize("padded", [False, True])
def test_sdpa_path_matches_naive_softmax(dqk, dv, padded):
    g = torch.Generator().manual_seed(0)
    B, H, L = 2, 3, 19
    q = torch.randn(B, H, L, dqk, generator=g, dtype=torch.float64)
    k = torch.randn(B, H, L, dqk, generator=g, dtype=torch.float64)
    v = torch.randn(B, H, L, dv, generator=g, dtype=torch.float64)
    key_mask = None
    if padded:
        key_mask = torch.ones(B, L, dtype=torch.bool)
        key_mask[1, 11:] = False
    out = attention(q, k, v, key_mask, scale=0.3)
    assert out.shape == (B, H, L, dv)
    torch.testing.assert_close(out, _naive(q, k, v, key_mask, 0.3), atol=1e-12, rtol=1e-12)


def test_all_true_mask_equals_no_mask_and_empty_sample_is_finite():
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, 2, 9, 8, generator=g) for _ in range(3))
    ones = torch.ones(2, 9, dtype=torch.bool)
    torch.testing.assert_close(attention(q, k, v, ones), attention(q, k, v, None))
    empty = ones.clone()
    empty[0] = False
    assert torch.isfinite(attention(q, k, v, empty)).all()


def test_backend_checks():
    q = torch.randn(1, 2, 5, 8)
    with pytest.raises(ValueError, match="unknown backend"):
        attention(q, q, q, backend="xformers")
    with pytest.raises(ValueError, match="key_mask must be"):
        attention(q, q, q, torch.ones(1, 4, dtype=torch.bool))
    with pytest.raises(RuntimeError, match="flash_attn"):
        attention(q, q, q, backend="flash_attn")  # CPU float32: never usable
    assert common_width(q, 13, 21) == 21
    assert not attn_mod.flash_attn_usable(q, 8, 8)


@pytest.mark.gpu
@pytest.mark.skipif(not attn_mod.HAS_FLASH_ATTN, reason="flash_attn not installed")
def test_flash_attn_varlen_matches_sdpa_on_cuda():
    g = torch.Generator(device="cuda").manual_seed(0)
    B, H, L = 2, 4, 70
    q, k = (torch.randn(B, H, L, 40, generator=g, device="cuda") for _ in range(2))
    v = torch.randn(B, H, L, 52, generator=g, device="cuda")
    key_mask = torch.ones(B, L, dtype=torch.bool, device="cuda")
    key_mask[1, 50:] = False
    ref = attention(q, k, v, key_mask, backend="sdpa")
    out = attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), key_mask, backend="flash_attn").float()
    valid = key_mask[:, None, :, None].expand_as(ref)
    assert ((out - ref).abs()[valid].max() / ref.abs().max()) < 2e-2
    assert (out[1, :, 50:] == 0).all()


@pytest.mark.parametrize("preset,overrides", [
    ("flash", {}), ("small", {}), ("tiny", {}),
    ("small", {"seq_offset_freqs": 8, "seq_neighbors": 2}),  # experiment=cpu_small
    ("flash", {"attn_pair_channels": 40, "seq_offset_freqs": 8}),  # the compact lifting at the paper's dims
])
def test_every_flash_preset_runs_on_fused_kernels_only(preset, overrides):
    """Forward + backward of each flash preset with padding, under the CPU flash kernel alone (the outer context
    allows nothing else; attention() also restricts SDPA to fused kernels itself)."""
    from pathlib import Path

    from hydra.utils import instantiate
    from omegaconf import OmegaConf
    from torch.nn.attention import SDPBackend, sdpa_kernel

    cfg = OmegaConf.load(Path(__file__).resolve().parents[2] / "configs" / "model" / f"{preset}.yaml")
    torch.manual_seed(0)
    model = instantiate(cfg, **overrides, num_blocks=1)  # one block: the same attention calls, less time
    B, L = 2, 40
    g = torch.Generator().manual_seed(0)
    mask = torch.ones(B, L)
    mask[1, 30:] = 0
    batch = {"rots_t": torch.eye(3).expand(B, L, 3, 3), "trans_t": torch.randn(B, L, 3, generator=g) * 10,
             "t": torch.tensor([0.3, 0.8]), "res_mask": mask, "residue_index": torch.arange(L).repeat(B, 1)}
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
        out = model(batch)
        (out["pred_trans"].square().mean() + out["pred_psi"].mean()).backward()
    assert torch.isfinite(out["pred_trans"]).all()


def test_math_backend_equals_fused_and_bad_backend_is_refused():
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, 3, 17, 12, generator=g) for _ in range(3))
    mask = torch.ones(2, 17, dtype=torch.bool)
    mask[0, 11:] = False
    torch.testing.assert_close(attention(q, k, v, mask, backend="math"), attention(q, k, v, mask, backend="sdpa"))
    with pytest.raises(ValueError, match="math"):
        attention(q, k, v, backend="quadratic")
