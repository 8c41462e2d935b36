"""Deterministic held-out loss: fixed chains, a fixed grid of times, fixed noise.

Training losses are noisy (one random t and noise per chain and step); comparing checkpoints or recipes needs the
same corruption every time. :func:`heldout_losses` corrupts every held-out chain at every t of a grid with noise
drawn from a generator seeded per t, runs the network once (no self-conditioning) and returns the loss terms per
t, plus how far the clean prediction moves from x_t toward the data (``progress``):

    progress(t) = sum_i (x^_i - x_t,i) . (x_1,i - x_t,i) / sum_i |x_1,i - x_t,i|^2

over the CA translations of each chain, averaged over chains: 0 when the network returns x_t (it has learnt
nothing), 1 when it predicts x_1 exactly (in the direction of the data, to scale).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from flowbb.flow.config import FlowConfig
from flowbb.flow.interpolant import Interpolant
from flowbb.flow.losses import flow_losses
from flowbb.training.module import clean_frames, model_inputs

Tensor = torch.Tensor

T_GRID = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
LOSS_TERMS = ("trans", "rot", "bb_atom", "pair_dist", "clash", "total")


@torch.no_grad()
def heldout_losses(model: torch.nn.Module, flow_cfg: FlowConfig, batch: Mapping[str, Tensor],
                   t_grid: Sequence[float] = T_GRID, seed: int = 0) -> dict[str, list[float]]:
    """Loss terms and progress per t on a fixed batch of held-out chains.

    Args:
        model: a FlowModel (eval mode).
        flow_cfg: its flow config (path and losses).
        batch: collated chains (``atoms [B, L, 4, 3]``, ``res_mask [B, L]``, ``residue_index [B, L]``).
        t_grid: times to corrupt at.
        seed: noise at ``t_grid[k]`` is drawn from a generator seeded ``seed + k``: every call with the same
            chains, grid and seed sees the same corruption.
    Returns:
        ``{"t": [...], "trans": [...], "rot": [...], "bb_atom": [...], "pair_dist": [...], "clash": [...], "total": [...],
        "progress": [...]}``, one value per t (means over chains).
    """
    device = next(model.parameters()).device
    clean = clean_frames({k: v.to(device) for k, v in batch.items() if isinstance(v, Tensor)})
    interpolant = Interpolant(flow_cfg)
    mask = clean["res_mask"]
    result: dict[str, list[float]] = {"t": [float(t) for t in t_grid]}
    for key in (*LOSS_TERMS, "progress"):
        result[key] = []
    for k, t in enumerate(t_grid):
        gen = torch.Generator(device=device).manual_seed(int(seed) + k)
        times = torch.full((mask.shape[0],), float(t), device=device)
        noisy = interpolant.corrupt(clean, gen, times)
        out = model(model_inputs(noisy, torch.zeros_like(noisy["trans_t"])))
        out = {key: v.float() for key, v in out.items()}
        losses, _ = flow_losses(noisy, out, flow_cfg, return_per_sample=True)
        for key in LOSS_TERMS:
            result[key].append(float(losses[key]))
        to_data = (noisy["trans_1"] - noisy["trans_t"]) * mask[..., None]
        moved = (out["pred_trans"] - noisy["trans_t"]) * mask[..., None]
        per_chain = (moved * to_data).sum((-1, -2)) / (to_data * to_data).sum((-1, -2)).clamp_min(1e-8)
        result["progress"].append(float(per_chain.mean()))
    return result
