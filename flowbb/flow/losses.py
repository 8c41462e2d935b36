"""Flow-matching losses on clean-frame predictions (masked, linear in L) and per-t-bin logging.

The settings are the flow config's ``losses`` group (:class:`~flowbb.flow.config.LossConfig`; its field names are
used below). All terms are computed per sample, then averaged over the batch. Lengths enter in ``length_scale``
units (0.1: nm, as FrameFlow/FoldFlow), and every error is divided by ``1 - min(t, t_clip)`` before squaring:

- ``trans``: mean over valid residues and coordinates of ``((x1 - x1_hat) * s / n_t)^2``.
- ``rot``: mean of ``((log(R_t^T R_1) - log(R_t^T R1_hat)) / n_t)^2``, the rotation vector-field error
  (both fields without their common 1/(1 - t) factor, as FrameFlow).
- ``bb_atom``: the molecule type's loss atoms (:meth:`flowbb.molecules.base.Molecule.loss_atoms`; protein: ideal
  N, CA, C, O from frames + psi, O only where psi is defined; RNA: the frame atoms C4', O4', C3') of the
  prediction against those of the truth. Only for samples with t > ``aux_t_threshold`` (zero otherwise).
- ``pair_dist``: for each residue i and each of its ``pair_dist_k`` nearest neighbours j in the TRUE structure
  (kNN on the true frame origins), the K x K loss-atom distances |a_i - b_j| of prediction vs truth. Only for
  t > ``aux_t_threshold``. Memory and time O(B L k).
- ``clash``: for each residue i and each of its ``pair_dist_k`` nearest neighbours j in the PREDICTED structure
  (kNN on the predicted frame origins, CA / C4') at sequence separation |i - j| >= the molecule type's
  ``clash_min_seq_sep``, ``relu(clash_distance - |x_i - x_j|)`` (in ``length_scale`` units, divided by
  ``1 - min(t, t_clip)``) squared, summed over the pairs and averaged over residues. The distances are the
  molecule's (:class:`~flowbb.molecules.base.Molecule`; protein 3.8 Å at |i - j| >= 3, RNA 3.5 Å at >= 2), at
  which real structures have almost no pair, so the term is about zero on them; it penalises the collapsed,
  clashing predictions that kNN on the truth (``pair_dist``) never sees. Only for t > ``aux_t_threshold``;
  weight ``clash_weight`` (0: logged, not in ``total``).
- the molecule type's further terms (:meth:`~flowbb.molecules.base.Molecule.extra_losses`; RNA: ``torsion``,
  the L2 error of the torsions' (sin, cos), weight ``torsion_weight``), only for t > ``aux_t_threshold``.
- ``total``: the weighted sum of the terms.

The molecule type is the batch's (``batch["molecule"]`` codes, :func:`flowbb.molecules.molecule_of`; protein
without them). Inputs follow the FlowModel contract: ``batch`` holds ``rots_1 [B, L, 3, 3]``, ``trans_1 [B, L, 3]``
(Å), ``res_mask [B, L]``, ``t [B]``, ``rots_t [B, L, 3, 3]`` and the true torsions: protein: either
``psi_1 [B, L]`` + ``psi_mask [B, L]`` or ``atoms [B, L, 4, 3]`` (then psi comes from
:func:`flowbb.geometry.backbone.psi_from_backbone`, using ``residue_index`` when present); RNA: ``torsions_1
[B, L, 8, 2]`` + ``torsion_mask [B, L, 8]``. ``model_out`` holds ``pred_rots``, ``pred_trans`` (Å) and protein:
``pred_psi`` (radians); RNA: ``pred_torsions [B, L, 8, 2]``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from flowbb.flow.config import FlowConfig, LossConfig, flow_config_or_default
from flowbb.geometry import so3
from flowbb.geometry.neighbors import knn
from flowbb.molecules import molecule_of

Tensor = torch.Tensor

LOSS_TERMS = ("trans", "rot", "bb_atom", "pair_dist", "clash")


def _require(d: Mapping[str, Tensor], key: str, where: str) -> Tensor:
    if key not in d:
        raise KeyError(f"flow_losses: {where} has no '{key}' (keys: {sorted(d)})")
    return d[key]


def _gather_residues(x: Tensor, idx: Tensor) -> Tensor:
    """``x [B, L, ...]`` gathered at neighbour indices ``idx [B, L, k]`` -> ``[B, L, k, ...]``."""
    b, l, k = idx.shape
    flat = idx.reshape(b, l * k)
    tail = x.shape[2:]
    gathered = torch.gather(x, 1, flat.view(b, l * k, *([1] * len(tail))).expand(b, l * k, *tail))
    return gathered.view(b, l, k, *tail)


def _pair_distances(atoms: Tensor, nbr_atoms: Tensor, eps: float = 1e-8) -> Tensor:
    """|a_i - b_j| for atoms ``[B, L, K, 3]`` and neighbour atoms ``[B, L, k, K, 3]``.

    Returns:
        ``[B, L, k, K, K]``.
    """
    diff = atoms[:, :, None, :, None, :] - nbr_atoms[:, :, :, None, :, :]
    return torch.sqrt((diff * diff).sum(-1) + eps)


def clash_losses(
    pred_trans: Tensor,
    res_mask: Tensor,
    residue_index: Tensor | None,
    cfg: LossConfig,
    clash_distance: float,
    min_seq_sep: int,
) -> Tensor:
    """The ``clash`` term (module docstring) without its t factor: ``[B]`` mean over valid residues of
    ``sum_j (length_scale * relu(clash_distance - |x_i - x_j|))^2`` over the ``pair_dist_k`` nearest predicted
    neighbours j with |i - j| >= ``min_seq_sep`` (sequence positions from ``residue_index [B, L]`` when given,
    else 0 .. L - 1). ``pred_trans [B, L, 3]`` and ``clash_distance`` in Å; ``cfg`` the flow config's ``losses``.
    Memory and time O(B L k).
    """
    b, l = res_mask.shape
    with torch.no_grad():
        idx, _, nbr_mask = knn(pred_trans.detach(), res_mask, cfg.pair_dist_k, cfg.knn_chunk_size)
    if residue_index is None:
        residue_index = torch.arange(l, device=pred_trans.device).expand(b, l)
    pos = residue_index.to(pred_trans.device).long()
    sep = (_gather_residues(pos, idx) - pos[..., None]).abs()
    pair_on = (nbr_mask.bool() & res_mask.bool()[..., None] & (sep >= min_seq_sep)).to(pred_trans.dtype)
    diff = pred_trans[:, :, None, :] - _gather_residues(pred_trans, idx)
    dist = torch.sqrt((diff * diff).sum(-1) + 1e-8)
    overlap = torch.relu(clash_distance - dist) * cfg.length_scale
    n_res = res_mask.to(pred_trans.dtype).sum(-1).clamp_min(1.0)
    return (overlap**2 * pair_on).sum((1, 2)) / n_res


def per_sample_losses(
    batch: Mapping[str, Tensor],
    model_out: Mapping[str, Tensor],
    cfg: FlowConfig | None = None,
) -> dict[str, Tensor]:
    """Per-sample loss terms.

    Args:
        batch, model_out: see the module docstring.
        cfg: the flow config (its ``losses`` group is read; ``None`` = defaults).
    Returns:
        dict ``trans``, ``rot``, ``bb_atom``, ``pair_dist``, ``clash``, the molecule type's extra terms (RNA: ``torsion``)
        and ``total``, each ``[B]`` (unweighted terms, weighted total).
    """
    c = flow_config_or_default(cfg, "flow_losses").losses
    molecule = molecule_of(batch)
    rots_1 = _require(batch, "rots_1", "batch")
    trans_1 = _require(batch, "trans_1", "batch")
    res_mask = _require(batch, "res_mask", "batch")
    t = _require(batch, "t", "batch")
    rots_t = _require(batch, "rots_t", "batch")
    pred_rots = _require(model_out, "pred_rots", "model_out")
    pred_trans = _require(model_out, "pred_trans", "model_out")
    pred_tors = molecule.pred_torsions(model_out, res_mask)
    b, l = res_mask.shape
    if pred_trans.shape != (b, l, 3) or pred_rots.shape != (b, l, 3, 3):
        raise ValueError(
            f"flow_losses: model_out shapes pred_rots {tuple(pred_rots.shape)}, pred_trans "
            f"{tuple(pred_trans.shape)} do not match res_mask {(b, l)}"
        )

    dtype = pred_trans.dtype
    mask = res_mask.to(dtype)
    n_res = mask.sum(-1).clamp_min(1.0)
    t = t.to(dtype)
    inv_norm = 1.0 / (1.0 - torch.clamp(t, max=c.t_clip))  # [B]
    s = c.length_scale

    # Translation error on clean positions.
    trans_err = (trans_1.to(dtype) - pred_trans) * (s * inv_norm)[:, None, None]
    trans_loss = ((trans_err**2).sum(-1) * mask).sum(-1) / (3.0 * n_res)

    # Rotation vector-field error (body frame at R_t).
    rots_t_inv = rots_t.to(dtype).transpose(-1, -2)
    gt_vf = so3.log(rots_t_inv @ rots_1.to(dtype))
    pred_vf = so3.log(rots_t_inv @ pred_rots)
    rot_err = (gt_vf - pred_vf) * inv_norm[:, None, None]
    rot_loss = ((rot_err**2).sum(-1) * mask).sum(-1) / (3.0 * n_res)

    # Auxiliary losses near the data end.
    aux_on = (t > c.aux_t_threshold).to(dtype)
    tors_1, tors_mask = molecule.true_torsions(batch, res_mask)
    true_atoms, atom_mask = molecule.loss_atoms(
        rots_1.to(dtype), trans_1.to(dtype), tors_1.to(dtype), tors_mask, res_mask
    )
    pred_atoms, _ = molecule.loss_atoms(pred_rots, pred_trans, pred_tors, tors_mask, res_mask)
    am = atom_mask.to(dtype)
    atom_err = (true_atoms - pred_atoms) * (s * inv_norm)[:, None, None, None]
    bb_loss = ((atom_err**2).sum(-1) * am).sum((-1, -2)) / (3.0 * am.sum((-1, -2)).clamp_min(1.0))

    with torch.no_grad():
        idx, _, nbr_mask = knn(trans_1.to(dtype), res_mask, c.pair_dist_k, c.knn_chunk_size)
    nbr_mask = nbr_mask.bool() & res_mask.bool()[..., None]
    pair_mask = (
        nbr_mask[..., None, None]
        & atom_mask[:, :, None, :, None]
        & _gather_residues(atom_mask, idx)[:, :, :, None, :]
    )
    d_true = _pair_distances(true_atoms, _gather_residues(true_atoms, idx))
    d_pred = _pair_distances(pred_atoms, _gather_residues(pred_atoms, idx))
    pm = pair_mask.to(dtype)
    d_err = (d_true - d_pred) * (s * inv_norm)[:, None, None, None, None]
    pair_loss = (d_err**2 * pm).sum((1, 2, 3, 4)) / pm.sum((1, 2, 3, 4)).clamp_min(1.0)

    # Logged at weight 0 too (held-out report), but then outside autograd: no graph on the training hot path.
    with torch.set_grad_enabled(torch.is_grad_enabled() and c.clash_weight > 0):
        clash = clash_losses(
            pred_trans, res_mask, batch.get("residue_index"), c, molecule.clash_distance, molecule.clash_min_seq_sep
        ) * inv_norm**2

    terms = {
        "trans": trans_loss,
        "rot": rot_loss,
        "bb_atom": bb_loss * aux_on,
        "pair_dist": pair_loss * aux_on,
        "clash": clash * aux_on,
    }
    extra = molecule.extra_losses((tors_1, tors_mask), pred_tors, res_mask)
    terms.update({name: value * aux_on for name, value in extra.items()})
    weights = {
        "trans": c.trans_weight,
        "rot": c.rot_weight,
        "bb_atom": c.bb_atom_weight,
        "pair_dist": c.pair_dist_weight,
        "clash": c.clash_weight,
        "torsion": c.torsion_weight,
    }
    terms["total"] = sum(weights[k] * terms[k] for k in (*LOSS_TERMS, *extra))
    return terms


def flow_losses(
    batch: Mapping[str, Tensor],
    model_out: Mapping[str, Tensor],
    cfg: FlowConfig | None = None,
    return_per_sample: bool = False,
) -> dict[str, Tensor] | tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Batch-mean losses (scalars ``trans``, ``rot``, ``bb_atom``, ``pair_dist``, ``clash``, the molecule type's extra terms,
    ``total``).

    Args:
        batch, model_out, cfg: as in :func:`per_sample_losses`.
        return_per_sample: also return the per-sample ``[B]`` terms (for :func:`t_bin_losses`).
    Returns:
        dict of scalar tensors, or (that dict, per-sample dict).
    """
    per_sample = per_sample_losses(batch, model_out, cfg)
    means = {k: v.mean() for k, v in per_sample.items()}
    return (means, per_sample) if return_per_sample else means


def t_bin_edges(num_bins: int) -> list[float]:
    """``num_bins + 1`` equal-width edges over [0, 1]."""
    if num_bins < 1:
        raise ValueError(f"t_bin_edges: num_bins must be >= 1, got {num_bins}")
    return [i / num_bins for i in range(num_bins + 1)]


def t_bin_losses(per_sample: Mapping[str, Tensor], t: Tensor, num_bins: int = 4) -> dict[str, Tensor]:
    """Per-sample losses averaged within equal-width t bins, for logging.

    Args:
        per_sample: name -> ``[B]`` values (e.g. from ``flow_losses(..., return_per_sample=True)``).
        t: ``[B]`` times in [0, 1].
        num_bins: number of bins over [0, 1] (the last bin includes t = 1).
    Returns:
        ``{"<name>_t<lo>-<hi>": scalar mean}`` (detached) for every name and every non-empty bin, with
        edges printed with two decimals, e.g. ``"trans_t0.75-1.00"``.
    """
    edges = t_bin_edges(num_bins)
    tb = t.detach()
    which = torch.clamp((tb * num_bins).floor().long(), 0, num_bins - 1)
    out: dict[str, Tensor] = {}
    for i in range(num_bins):
        sel = which == i
        if not bool(sel.any()):
            continue
        tag = f"t{edges[i]:.2f}-{edges[i + 1]:.2f}"
        for name, values in per_sample.items():
            out[f"{name}_{tag}"] = values.detach()[sel].mean()
    return out
