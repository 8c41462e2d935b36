"""Clash guidance: the repulsion step on its own (exact values, invariances) and inside the Euler sampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flowbb.flow.config import FlowConfig, PathConfig
from flowbb.flow.guidance import clash_repulsion
from flowbb.flow.sampler import make_generator, res_mask_from_lengths, sample
from flowbb.geometry import so3
from flowbb.geometry.checks import count_clashes


def _pair(distance: float, positions: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    trans = torch.tensor([[[0.0, 0.0, 0.0], [distance, 0.0, 0.0]]], dtype=torch.float64)
    return trans, torch.ones(1, 2, dtype=torch.float64), torch.tensor([positions])


def test_one_pair_ends_at_the_clash_distance_with_strength_one():
    trans, mask, pos = _pair(2.0, (0, 7))
    moved = clash_repulsion(trans, mask, pos, distance=3.8, min_seq_sep=3, strength=1.0)
    assert torch.linalg.norm(moved[0, 1] - moved[0, 0]).item() == pytest.approx(3.8, abs=1e-9)
    assert torch.allclose(moved.mean(1), trans.mean(1))  # both move, symmetrically
    half = clash_repulsion(trans, mask, pos, distance=3.8, min_seq_sep=3, strength=0.5)
    assert torch.linalg.norm(half[0, 1] - half[0, 0]).item() == pytest.approx(2.0 + 0.5 * 1.8, abs=1e-9)


def test_close_in_sequence_far_apart_and_zero_strength_are_untouched():
    trans, mask, pos = _pair(2.0, (0, 2))  # |i - j| = 2 < 3: bonded neighbourhood
    assert torch.equal(clash_repulsion(trans, mask, pos, distance=3.8, min_seq_sep=3, strength=1.0), trans)
    trans, mask, pos = _pair(4.5, (0, 9))  # no overlap
    assert torch.equal(clash_repulsion(trans, mask, pos, distance=3.8, min_seq_sep=3, strength=1.0), trans)
    trans, mask, pos = _pair(1.0, (0, 9))
    assert torch.equal(clash_repulsion(trans, mask, pos, distance=3.8, min_seq_sep=3, strength=0.0), trans)
    with pytest.raises(ValueError, match="strength"):
        clash_repulsion(trans, mask, pos, distance=3.8, min_seq_sep=3, strength=-0.1)


def test_one_sided_neighbours_do_not_shift_the_chain():
    """k = 1 on a line 0, 2.0, 2.5 Å: atom 0 lists atom 1, but atom 1 lists atom 2: pushes do not cancel pairwise,
    the centred step keeps the centroid; float32 and a bool mask take the same path."""
    trans = torch.tensor([[[0.0, 0, 0], [2.0, 0, 0], [2.5, 0, 0]]])
    mask = torch.ones(1, 3, dtype=torch.bool)
    pos = torch.tensor([[0, 10, 20]])
    moved = clash_repulsion(trans, mask, pos, distance=3.8, min_seq_sep=3, strength=1.0, k=1)
    assert moved.dtype == torch.float32
    assert torch.allclose(moved.mean(1), trans.mean(1), atol=1e-6)
    assert torch.allclose(moved[0, 2, 0] - moved[0, 1, 0], torch.tensor(3.8))  # the mutual pair is resolved
    gapped = torch.tensor([[0, 1, 5]])  # gaps in the numbering count: atoms 1 and 2 are 4 apart in sequence
    assert not torch.equal(clash_repulsion(trans, mask, gapped, distance=3.8, min_seq_sep=3, strength=1.0), trans)


def test_padding_ignored_and_unchanged():
    g = torch.Generator().manual_seed(0)
    trans = 3.0 * torch.randn(2, 40, 3, generator=g, dtype=torch.float64)
    mask = res_mask_from_lengths([40, 25], dtype=torch.float64)
    trans[1, 25:] = trans[1, :15] + 0.01  # padding sits on real atoms: must neither move nor push
    pos = torch.arange(40).expand(2, 40)
    moved = clash_repulsion(trans, mask, pos, distance=3.8, min_seq_sep=3, strength=1.0)
    assert torch.equal(moved[1, 25:], trans[1, 25:])
    assert not torch.equal(moved[1, :25], trans[1, :25])  # the real atoms did clash
    alone = clash_repulsion(trans[1:, :25], mask[1:, :25], pos[1:, :25], distance=3.8, min_seq_sep=3, strength=1.0)
    assert torch.allclose(moved[1, :25], alone[0], atol=1e-12)


def test_equivariant_under_rigid_motions_and_reduces_overlap(real_backbones: list[np.ndarray]):
    g = torch.Generator().manual_seed(1)
    ca = torch.as_tensor(real_backbones[0][:, 1], dtype=torch.float64)[None]
    squeezed = 0.6 * (ca - ca.mean(1, keepdim=True))  # a chain compressed to 60 %: many non-local overlaps
    mask = torch.ones(squeezed.shape[:2], dtype=torch.float64)
    pos = torch.arange(squeezed.shape[1])[None]
    kw = {"distance": 3.8, "min_seq_sep": 3, "strength": 0.5}
    moved = clash_repulsion(squeezed, mask, pos, **kw)
    rot = so3.sample_uniform((1,), generator=g, dtype=torch.float64)[0]
    shift = 10.0 * torch.randn(3, generator=g, dtype=torch.float64)
    moved_after = clash_repulsion(squeezed @ rot.T + shift, mask, pos, **kw)
    assert torch.allclose(moved_after, moved @ rot.T + shift, atol=1e-9)
    before = count_clashes(squeezed, mask, threshold=3.8).item()
    assert before > 10
    assert count_clashes(moved, mask, threshold=3.8).item() < before


def test_sampler_guidance_removes_clashes_of_a_collapsed_target():
    """A model that always predicts a collapsed chain (every CA within ~1 Å): the x_t trajectory lands on it
    without guidance; with guidance the last x_t keeps non-local CAs apart."""
    l = 30
    g = torch.Generator().manual_seed(2)
    collapsed = 0.5 * torch.randn(1, l, 3, generator=g, dtype=torch.float64)
    rots = so3.sample_uniform((1, l), generator=g, dtype=torch.float64)

    def model_fn(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"pred_rots": rots, "pred_trans": collapsed, "pred_psi": torch.zeros(1, l, dtype=torch.float64)}

    mask = res_mask_from_lengths([l], dtype=torch.float64)
    cfg = FlowConfig(path=PathConfig(min_t=0.01))
    plain = sample(model_fn, mask, cfg, num_steps=50, generator=make_generator(0), save_traj=True)
    guided = sample(model_fn, mask, cfg, num_steps=50, generator=make_generator(0), save_traj=True, clash_guidance=1.0)
    last_plain, last_guided = plain["traj_trans"][-1], guided["traj_trans"][-1]
    assert torch.allclose(last_plain, collapsed, atol=1e-9)
    assert count_clashes(last_plain, mask).item() > 100
    assert count_clashes(last_guided, mask).item() < 0.2 * count_clashes(last_plain, mask).item()
    assert torch.equal(guided["trans"], collapsed)  # the final clean prediction is the model's own
    with pytest.raises(ValueError, match="clash_guidance"):
        sample(model_fn, mask, cfg, num_steps=5, clash_guidance=-1.0)
