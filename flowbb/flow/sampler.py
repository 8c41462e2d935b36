"""Euler integration of the learned flow from the prior (t = min_t) to data (t = 1). Model-agnostic.

``model_fn(batch) -> model_out`` follows the FlowModel contract: the batch holds ``rots_t [B, L, 3, 3]``,
``trans_t [B, L, 3]`` (Å), ``t [B]``, ``res_mask [B, L]`` (float 0/1), ``residue_index [B, L]`` (long) and
``sc_trans [B, L, 3]`` (previous clean translation prediction, zeros when none); the output holds
``pred_rots``, ``pred_trans`` (Å) and the torsions the molecule type reads
(:meth:`flowbb.molecules.base.Molecule.pred_torsions`: ``pred_psi [B, L]`` (radians) for proteins,
``pred_torsions [B, L, 8, 2]`` for RNA), the clean prediction at t = 1. Atoms are rebuilt from the final frames and
torsions by the molecule type (:meth:`~flowbb.molecules.base.Molecule.atoms_from_prediction`).

Per step t -> t + dt on the grid ``linspace(min_t, 1, num_steps + 1)``:

- translations: ``x <- x + dt (x1_hat - x) / (1 - t)`` (the last step lands on x1_hat);
- rotations, "exp" schedule: ``R <- R exp(dt * rot_rate * log(R^T R1_hat))`` (FrameFlow's exp schedule:
  a constant rate in place of 1 / (1 - t));
- optional stochastic term (``noise_scale > 0``): ``x += noise_scale sqrt(dt) trans_scale eps`` (eps standard
  normal, centred per chain) and ``R <- R IGSO3(noise_scale sqrt(dt))``;
- optional low-temperature Langevin term on translations (``langevin_rate`` c > 0, ``temperature`` gamma):
  ``x += -c dt (x - t x1_hat) + sqrt(2 c gamma dt) (1 - t) trans_scale eps`` (eps standard normal, centred per
  chain). For the Gaussian path ``x_t = (1 - t) x_0 + t x_1``, ``x_0 ~ N(0, trans_scale^2)``, the score is
  ``-(x_t - t x1_hat) / ((1 - t)^2 trans_scale^2)``, so the drift is ``g(t) score`` with
  ``g = c (1 - t)^2 trans_scale^2`` and the noise ``sqrt(2 g gamma)``: gamma = 1 keeps the flow's marginals (an
  exact Langevin corrector), gamma < 1 samples them at a lower temperature (Proteina's noise scaling: the noise
  part of x_t shrinks faster than the path's, less diverse and more designable backbones), gamma = 0 is the
  drift alone;
- optional clash guidance (``clash_guidance > 0``, at grid times t >= ``clash_guidance_min_t``): before the
  translation step, trace atoms of x1_hat closer than the molecule type's ``clash_distance`` (and at least
  ``clash_min_seq_sep`` apart in sequence) are pushed apart (:func:`flowbb.flow.guidance.clash_repulsion`); the
  guided prediction is also what self-conditioning feeds back and what ``clean_traj_trans`` holds; the final clean
  prediction is returned as the model gives it.

After the last step the model is called once more at t = 1 and its clean prediction is the sample. The model
is therefore called ``num_steps + 1`` times; both trajectories (x_t frames and clean predictions) have
``num_steps + 1`` entries. All randomness comes from one ``torch.Generator``, so a seed repeats a run exactly.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from flowbb.flow.config import FlowConfig, SamplerConfig, flow_config_or_default
from flowbb.flow.guidance import clash_repulsion
from flowbb.flow.interpolant import Interpolant, centre, randn
from flowbb.geometry import so3
from flowbb.geometry.rigid import mask_frames
from flowbb.molecules import get_molecule
from flowbb.molecules.base import Molecule

Tensor = torch.Tensor
ModelFn = Callable[[dict[str, Tensor]], Mapping[str, Tensor]]


def resolve_sampler(defaults: SamplerConfig, **overrides: Any) -> SamplerConfig:
    """``defaults`` with every override that is not ``None`` in its place, each key converted to the type of its
    default and checked by :class:`SamplerConfig` (a ``ValueError`` naming the key)."""
    fields = {f.name: type(f.default) for f in dataclasses.fields(SamplerConfig)}
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise TypeError(f"resolve_sampler: unknown sampler keys {unknown} (known: {sorted(fields)})")
    return dataclasses.replace(defaults, **{k: fields[k](v) for k, v in overrides.items() if v is not None})


def res_mask_from_lengths(
    lengths: Sequence[int], device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
) -> Tensor:
    """Residue mask ``[B, max(lengths)]`` (1 for the first ``lengths[b]`` positions of row b)."""
    if len(lengths) == 0 or min(lengths) < 1:
        raise ValueError(f"res_mask_from_lengths: lengths must be >= 1, got {list(lengths)}")
    ar = torch.arange(max(lengths), device=device)
    return (ar[None, :] < torch.as_tensor(list(lengths), device=device)[:, None]).to(dtype)


def make_generator(seed: int | None, device: torch.device | str = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``seed`` (``None``: a fresh random seed)."""
    gen = torch.Generator(device=device)
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(int(seed))
    return gen


def _check_model_out(out: Mapping[str, Tensor], b: int, l: int) -> None:
    for key, shape in (("pred_rots", (b, l, 3, 3)), ("pred_trans", (b, l, 3))):
        if key not in out:
            raise KeyError(f"sample: model_fn output has no '{key}' (keys: {sorted(out)})")
        if tuple(out[key].shape) != shape:
            raise ValueError(
                f"sample: model_fn output '{key}' has shape {tuple(out[key].shape)}, expected {shape}"
            )


@torch.no_grad()
def sample(
    model_fn: ModelFn,
    res_mask: Tensor,
    cfg: FlowConfig | None = None,
    *,
    num_steps: int | None = None,
    rot_rate: float | None = None,
    noise_scale: float | None = None,
    self_condition: bool | None = None,
    clash_guidance: float | None = None,
    clash_guidance_min_t: float | None = None,
    langevin_rate: float | None = None,
    temperature: float | None = None,
    residue_index: Tensor | None = None,
    generator: torch.Generator | None = None,
    save_traj: bool = False,
    prior: tuple[Tensor, Tensor] | None = None,
    molecule: Molecule | str = "protein",
) -> dict[str, Tensor]:
    """Sample backbones by Euler integration from the prior.

    Args:
        model_fn: ``model_fn(batch) -> {pred_rots, pred_trans, <torsions>}`` (see module docstring).
        res_mask: ``[B, L]`` residue mask (see :func:`res_mask_from_lengths`).
        cfg: the flow config (``None``: defaults); supplies ``path.min_t``, ``path.trans_scale`` and the sampler
            defaults ``sampler.num_steps``, ``sampler.rot_rate``, ``sampler.noise_scale``, ``sampler.self_condition``,
            ``sampler.clash_guidance``, ``sampler.clash_guidance_min_t``, ``sampler.langevin_rate``,
            ``sampler.temperature``.
        num_steps, rot_rate, noise_scale, self_condition, clash_guidance, clash_guidance_min_t, langevin_rate,
            temperature: override the config's sampler keys.
        residue_index: ``[B, L]`` long (default ``0..L-1``).
        generator: ``torch.Generator`` for the prior and the stochastic term (any device; draws happen on its
            device, so a CPU generator gives the same prior on every device).
        save_traj: also return trajectories.
        prior: optional starting frames ``(rots_0 [B, L, 3, 3], trans_0 [B, L, 3])`` (Å) in place of a draw
            from the prior with ``generator`` (e.g. drawn per sample, so that a sample does not depend on
            its batch);
            padded positions are reset to identity / zero.
        molecule: the molecule type (a :class:`~flowbb.molecules.base.Molecule` or its name): which torsions the
            model's output holds and how atoms are rebuilt.
    Returns:
        dict with ``rots [B, L, 3, 3]``, ``trans [B, L, 3]`` (Å), the torsions under the molecule's
        ``sample_torsions`` key (proteins: ``psi [B, L]``; RNA: ``torsions [B, L, 8, 2]``; zeros at padding),
        ``atoms [B, L, A, 3]`` (proteins: N, CA, C, O from :func:`~flowbb.geometry.backbone.backbone_from_frames`;
        RNA: the 12 atoms of :mod:`flowbb.geometry.rna`; zeros at padding), ``res_mask``; with ``save_traj``:
        ``ts [T]`` (T = num_steps + 1), ``traj_rots [T, B, L, 3, 3]``, ``traj_trans [T, B, L, 3]``,
        ``traj_atoms [T, B, L, A, 3]`` (x_t frames at each grid time, with the torsions predicted there) and
        ``clean_traj_rots``, ``clean_traj_trans``, ``clean_traj_<torsions key>`` (``[T, B, L]`` psi /
        ``[T, B, L, 8, 2]``), ``clean_traj_atoms`` (the model's clean prediction at each grid time).
    """
    mol = get_molecule(molecule) if isinstance(molecule, str) else molecule
    c = flow_config_or_default(cfg, "sample")
    # the overrides replace the config's sampler keys and are checked by SamplerConfig (one home for the rules)
    s = resolve_sampler(c.sampler, num_steps=num_steps, rot_rate=rot_rate, noise_scale=noise_scale,
                        self_condition=self_condition, clash_guidance=clash_guidance,
                        clash_guidance_min_t=clash_guidance_min_t, langevin_rate=langevin_rate,
                        temperature=temperature)
    if res_mask.dim() != 2:
        raise ValueError(f"sample: res_mask must be [B, L], got shape {tuple(res_mask.shape)}")

    b, l = res_mask.shape
    device = res_mask.device
    dtype = res_mask.dtype if res_mask.is_floating_point() else torch.float32
    mask = res_mask.to(dtype)
    if residue_index is None:
        residue_index = torch.arange(l, device=device).expand(b, l).clone()
    elif residue_index.shape != (b, l):
        raise ValueError(f"sample: residue_index must have shape {(b, l)}, got {tuple(residue_index.shape)}")

    interpolant = Interpolant(c)
    if prior is None:
        rots, trans = interpolant.sample_prior(mask, generator, dtype=dtype)
    else:
        if tuple(prior[0].shape) != (b, l, 3, 3) or tuple(prior[1].shape) != (b, l, 3):
            raise ValueError(
                f"sample: prior must be (rots [{b}, {l}, 3, 3], trans [{b}, {l}, 3]), got "
                f"{tuple(prior[0].shape)} and {tuple(prior[1].shape)}"
            )
        rots, trans = mask_frames(prior[0].to(device, dtype), prior[1].to(device, dtype), mask)
    ts = torch.linspace(c.path.min_t, 1.0, s.num_steps + 1, dtype=torch.float64)
    sc_trans = torch.zeros_like(trans)

    traj: dict[str, list[Tensor]] = {k: [] for k in ("rots", "trans", "crots", "ctrans", "cpsi")}

    def torsions_of(out: Mapping[str, Tensor]) -> Tensor:
        """The molecule's torsions of a model output, zero at padding (psi ``[B, L]``, RNA ``[B, L, 8, 2]``)."""
        tor = mol.pred_torsions(out, mask).to(dtype)
        return tor * mask.reshape(*mask.shape, *([1] * (tor.dim() - mask.dim())))

    def call(t_value: float) -> Mapping[str, Tensor]:
        batch = {
            "rots_t": rots,
            "trans_t": trans,
            "t": torch.full((b,), t_value, dtype=dtype, device=device),
            "res_mask": mask,
            "residue_index": residue_index,
            "sc_trans": sc_trans,
        }
        out = model_fn(batch)
        _check_model_out(out, b, l)
        mol.pred_torsions(out, mask)  # raises on a missing or misshapen torsion output
        return out

    for i in range(s.num_steps):
        t1, t2 = float(ts[i]), float(ts[i + 1])
        dt = t2 - t1
        out = call(t1)
        r_hat, x_hat = mask_frames(out["pred_rots"].to(dtype), out["pred_trans"].to(dtype), mask)
        if s.clash_guidance > 0 and t1 >= s.clash_guidance_min_t:
            x_hat = clash_repulsion(x_hat, mask, residue_index, distance=mol.clash_distance,
                                    min_seq_sep=mol.clash_min_seq_sep, strength=s.clash_guidance)
        if save_traj:
            traj["rots"].append(rots)
            traj["trans"].append(trans)
            traj["crots"].append(r_hat)
            traj["ctrans"].append(x_hat)
            traj["cpsi"].append(mol.pred_torsions(out, mask).to(dtype))
        if s.self_condition:
            sc_trans = x_hat
        velocity = (x_hat - trans) / (1.0 - t1)
        if s.langevin_rate > 0:  # minus c times the noise part (1 - t) x_0 of x_t, as the prediction sees it
            velocity = velocity - s.langevin_rate * (trans - t1 * x_hat)
        trans = trans + dt * velocity
        if s.langevin_rate > 0 and s.temperature > 0:
            sigma = math.sqrt(2.0 * s.langevin_rate * s.temperature * dt) * (1.0 - t1) * c.path.trans_scale
            trans = trans + sigma * centre(randn((b, l, 3), generator, dtype, device), mask)
        rot_vf = so3.log(rots.transpose(-1, -2) @ r_hat)
        rots = rots @ so3.exp(dt * s.rot_rate * rot_vf)
        if s.noise_scale > 0:
            step_sigma = s.noise_scale * math.sqrt(dt)
            eps = centre(randn((b, l, 3), generator, dtype, device), mask)
            trans = trans + step_sigma * c.path.trans_scale * eps
            gd = generator.device if generator is not None else device
            rots = rots @ so3.sample_igso3(
                step_sigma, (b, l), generator=generator, dtype=dtype, device=gd
            ).to(device)
        rots, trans = mask_frames(rots, trans, mask)

    out = call(float(ts[-1]))
    r_fin, x_fin = mask_frames(out["pred_rots"].to(dtype), out["pred_trans"].to(dtype), mask)
    psi_fin = torsions_of(out)
    result: dict[str, Tensor] = {
        "rots": r_fin,
        "trans": x_fin,
        mol.sample_torsions: psi_fin,
        "atoms": mol.atoms_from_prediction(r_fin, x_fin, psi_fin, mask),
        "res_mask": mask,
    }
    if save_traj:
        traj["rots"].append(rots)
        traj["trans"].append(trans)
        traj["crots"].append(r_fin)
        traj["ctrans"].append(x_fin)
        traj["cpsi"].append(psi_fin)
        tr, tt, cr, ct, cp = (torch.stack(traj[k]) for k in ("rots", "trans", "crots", "ctrans", "cpsi"))
        result.update(
            {
                "ts": ts.to(dtype),
                "traj_rots": tr,
                "traj_trans": tt,
                "traj_atoms": mol.atoms_from_prediction(tr, tt, cp, mask.expand(s.num_steps + 1, b, l)),
                "clean_traj_rots": cr,
                "clean_traj_trans": ct,
                f"clean_traj_{mol.sample_torsions}": cp,
                "clean_traj_atoms": mol.atoms_from_prediction(cr, ct, cp, mask.expand(s.num_steps + 1, b, l)),
            }
        )
    return result


def sample_lengths(
    model_fn: ModelFn,
    lengths: Sequence[int],
    cfg: FlowConfig | None = None,
    *,
    device: torch.device | str | None = None,
    **kwargs: Any,
) -> dict[str, Tensor]:
    """:func:`sample` for chains of the given lengths (one padded batch ``[len(lengths), max(lengths)]``)."""
    return sample(model_fn, res_mask_from_lengths(lengths, device=device), cfg, **kwargs)
