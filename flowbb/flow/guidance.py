"""Sampling-time guidance: steps applied to the model's clean prediction inside the Euler sampler.

Clash repulsion (``sampler.clash_guidance``). A model trained only on data never sees the sampler's own
trajectory, and clashes between residues far apart in sequence form there (the learning benchmark: the held-out
predictions barely clash, samples do). At each Euler step the sampler moves x_t toward the clean prediction
x1_hat; this module pushes apart the trace atoms (CA, C4') of x1_hat that overlap before that move:

    x_i <- x_i + strength * sum_j 1/2 relu(d0 - |x_i - x_j|) (x_i - x_j) / |x_i - x_j|

over each residue's ``k`` nearest neighbours j with |i - j| >= ``min_seq_sep`` (sequence positions from
``residue_index``). For one overlapping pair and strength 1 that moves both atoms half the overlap apart, so the
pair ends exactly at d0; smaller strengths remove that fraction per step, larger ones overshoot. Pairs closer in
sequence (bonded neighbours, helix turns) are never touched; atoms at the very same position (no direction) are
not pushed. kNN lists are not symmetric (j among i's neighbours, i not among j's: only i moves), so the summed push
is centred per chain: the step never shifts the chain. It is the position-based step of a contact potential, in
the spirit of the guiding potentials of RFdiffusion and Chroma; frames keep their rotations (the whole residue
moves with its trace atom). Memory O(B L k); time that of the chunked kNN search (O(B L^2) distances, small).

In the sampler the guided prediction is what the step moves toward, what self-conditioning feeds back and what a
saved clean-prediction trajectory holds; the final sample (the model's prediction at t = 1) is not guided.
"""

from __future__ import annotations

import torch

from flowbb.flow.interpolant import centre
from flowbb.geometry.neighbors import knn

Tensor = torch.Tensor


def clash_repulsion(
    trans: Tensor,
    res_mask: Tensor,
    residue_index: Tensor,
    *,
    distance: float,
    min_seq_sep: int,
    strength: float,
    k: int = 10,
) -> Tensor:
    """One repulsion step (module docstring) on trace-atom positions.

    Args:
        trans: ``[B, L, 3]`` (Å), the clean prediction's translations.
        res_mask: ``[B, L]`` (float 0/1 or bool).
        residue_index: ``[B, L]`` long sequence positions.
        distance: d0 in Å (the molecule type's ``clash_distance``).
        min_seq_sep: pairs with |i - j| below this are left alone.
        strength: fraction of each overlap removed (0: no change; above 1 overshoots).
        k: neighbours searched per residue.
    Returns:
        ``[B, L, 3]`` moved translations (padding unchanged, per-chain centroid unchanged).
    """
    if strength < 0:
        raise ValueError(f"clash_repulsion: strength must be >= 0, got {strength}")
    if strength == 0 or trans.shape[1] < 2:
        return trans
    idx, dist, nbr_mask = knn(trans, res_mask, k)
    b, l, kk = idx.shape
    flat = idx.reshape(b, l * kk)
    nbr_pos = torch.gather(trans, 1, flat[..., None].expand(b, l * kk, 3)).view(b, l, kk, 3)
    nbr_res = torch.gather(residue_index.long(), 1, flat).view(b, l, kk)
    sep = (nbr_res - residue_index.long()[..., None]).abs()
    on = nbr_mask & res_mask.bool()[..., None] & (sep >= min_seq_sep)
    overlap = torch.relu(distance - dist) * on.to(trans.dtype)  # [B, L, k]
    away = (trans[:, :, None, :] - nbr_pos) / dist.clamp_min(1e-3)[..., None]  # unit vectors j -> i
    # kNN is not symmetric: when only i lists j, only i moves (half the overlap); the pair resolves over steps.
    push = 0.5 * strength * (overlap[..., None] * away).sum(2)
    return trans + centre(push, res_mask)  # zero at padding, no net shift of the chain
