"""Typed configuration of the flow: the path (prior, coupling, stochastic paths), the losses and the Euler sampler.

The Hydra group ``configs/flow/{base,ot,sfm}.yaml`` holds three sub-groups, one per dataclass::

    flow:
      path:    {coupling, min_t, t_skew, trans_scale, self_condition_prob, ot_rot_weight, sfm_ot, sfm_g_trans, ...}
      losses:  {length_scale, t_clip, trans_weight, ..., aux_t_threshold, pair_dist_k, knn_chunk_size, t_bins}
      sampler: {num_steps, rot_rate, noise_scale, self_condition, clash_guidance, clash_guidance_min_t,
                langevin_rate, temperature}

A config is converted ONCE, where it enters flowbb (:func:`as_flow_config`): the training module from the Hydra
``cfg.flow``, the checkpoint loader from the stored hyper-parameters, the benchmark scripts from their composed
config. Everything inside (:class:`~flowbb.flow.interpolant.Interpolant`, :func:`~flowbb.flow.losses.flow_losses`,
:func:`~flowbb.flow.sampler.sample`, :mod:`flowbb.inference.generate`, :mod:`flowbb.training.heldout`) takes a
:class:`FlowConfig` and converts nothing.

Checkpoints written before the nesting store the 24 flat keys (``coupling``, ``loss_clash_weight``,
``sample_num_steps``, ... and ``_target_``); :func:`as_flow_config` maps each to its new place
(:data:`LEGACY_KEYS`), so those checkpoints still load and sample.

Units: lengths in Å (``trans_scale``, ``sfm_g_trans``, ``sfm_sigma_min_trans``), angles in radians,
t in [0, 1] with t = 0 noise and t = 1 data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from flowbb.plain import to_plain

COUPLINGS = ("base", "ot", "sfm")


def _check_nonneg(group: str, obj: Any, names: tuple[str, ...]) -> None:
    for name in names:
        if getattr(obj, name) < 0:
            raise ValueError(f"flow config: flow.{group}.{name} must be >= 0, got {getattr(obj, name)}")


def _check_positive_int(group: str, obj: Any, names: tuple[str, ...]) -> None:
    for name in names:
        if int(getattr(obj, name)) < 1:
            raise ValueError(f"flow config: flow.{group}.{name} must be >= 1, got {getattr(obj, name)}")


@dataclasses.dataclass
class PathConfig:
    """Prior, coupling and probability path (``flow.path``).

    Attributes:
        coupling: ``"base"`` (independent noise-data pairs), ``"ot"`` (minibatch optimal transport within groups
            of equal length) or ``"sfm"`` (stochastic paths, paired by OT when ``sfm_ot``, as FoldFlow-SFM).
        min_t: training t lies in [min_t, 1); sampling integrates from min_t to 1.
        t_skew: training t = min_t + (1 - min_t) u with u ~ Beta(t_skew, 1), density prop. to u^(t_skew - 1):
            1 is uniform, > 1 spends more steps near the data (Proteina's time distribution is Beta(1.9, 1)).
        trans_scale: standard deviation (Å) of the Gaussian translation prior (centred per chain).
        self_condition_prob: probability that a training step uses self-conditioning
            (drawn by :meth:`Interpolant.draw_self_condition`).
        ot_rot_weight: OT cost (``coupling="ot"|"sfm"``): weight of the summed squared rotation geodesic against the
            summed squared aligned translation distance (in units of ``flow.losses.length_scale``, nm by default).
        sfm_ot: with ``coupling="sfm"``, also pair noise and data by minibatch OT (FoldFlow-SFM does).
        sfm_g_trans, sfm_sigma_min_trans: stochastic paths, sigma_t = sqrt(g^2 t (1 - t) + sigma_min^2), in Å:
            isotropic Gaussian noise of std sigma_t per coordinate on x_t (centred per chain, so the per-coordinate
            variance is sigma_t^2 (n - 1) / n for n residues).
        sfm_g_rots, sfm_sigma_min_rots: the same in radians: R_t <- R_t IGSO3(sigma_t) (body-frame noise; for small
            sigma the rotation vector is about N(0, sigma^2 I)).
    """

    coupling: str = "base"
    min_t: float = 0.01
    t_skew: float = 1.0
    trans_scale: float = 10.0
    self_condition_prob: float = 0.5
    ot_rot_weight: float = 1.0
    sfm_ot: bool = True
    sfm_g_trans: float = 2.0
    sfm_sigma_min_trans: float = 0.01
    sfm_g_rots: float = 0.2
    sfm_sigma_min_rots: float = 0.01

    def __post_init__(self) -> None:
        if self.coupling not in COUPLINGS:
            raise ValueError(f"flow config: flow.path.coupling must be one of {COUPLINGS}, got {self.coupling!r}")
        if not 0.0 <= self.min_t < 1.0:
            raise ValueError(f"flow config: flow.path.min_t must be in [0, 1), got {self.min_t}")
        if not 0.0 <= self.self_condition_prob <= 1.0:
            raise ValueError(
                f"flow config: flow.path.self_condition_prob must be in [0, 1], got {self.self_condition_prob}"
            )
        if self.trans_scale <= 0:
            raise ValueError(f"flow config: flow.path.trans_scale must be > 0, got {self.trans_scale}")
        if self.t_skew <= 0:
            raise ValueError(f"flow config: flow.path.t_skew must be > 0, got {self.t_skew}")
        _check_nonneg("path", self, ("ot_rot_weight", "sfm_g_trans", "sfm_sigma_min_trans", "sfm_g_rots",
                                     "sfm_sigma_min_rots"))


@dataclasses.dataclass
class LossConfig:
    """Loss terms, their weights and the neighbour search behind them (``flow.losses``;
    see :mod:`flowbb.flow.losses`).

    Attributes:
        length_scale: Å -> loss units for translations and atoms (0.1: nm, as FrameFlow/FoldFlow); also the unit of
            the OT cost's translation term.
        t_clip: errors are divided by 1 - min(t, t_clip).
        trans_weight, rot_weight, bb_atom_weight, pair_dist_weight: term weights.
        clash_weight: weight of the ``clash`` term (predicted frame origins closer than the molecule type's
            ``clash_distance`` among each residue's ``pair_dist_k`` nearest predicted neighbours); 0 leaves it out of
            ``total`` (it is still computed and logged).
        torsion_weight: weight of the torsion (sin, cos) L2 term of molecule types that have one (RNA).
        aux_t_threshold: backbone-atom, pair-distance, clash and torsion terms only for samples with t > this.
        pair_dist_k: neighbours per residue (kNN on the true CA) for the pair-distance loss (and predicted CA for
            the clash term).
        knn_chunk_size: query chunk of the neighbour search (memory O(chunk * L)).
        t_bins: number of equal-width t bins for per-t-bin logging.
    """

    length_scale: float = 0.1
    t_clip: float = 0.9
    trans_weight: float = 2.0
    rot_weight: float = 1.0
    bb_atom_weight: float = 0.25
    pair_dist_weight: float = 0.25
    clash_weight: float = 0.0
    torsion_weight: float = 1.0
    aux_t_threshold: float = 0.75
    pair_dist_k: int = 10
    knn_chunk_size: int = 1024
    t_bins: int = 4

    def __post_init__(self) -> None:
        if not 0.0 <= self.t_clip < 1.0:
            raise ValueError(f"flow config: flow.losses.t_clip must be in [0, 1), got {self.t_clip}")
        if self.length_scale <= 0:
            raise ValueError(f"flow config: flow.losses.length_scale must be > 0, got {self.length_scale}")
        _check_nonneg("losses", self, ("trans_weight", "rot_weight", "bb_atom_weight", "pair_dist_weight",
                                       "clash_weight", "torsion_weight"))
        _check_positive_int("losses", self, ("pair_dist_k", "knn_chunk_size", "t_bins"))


@dataclasses.dataclass
class SamplerConfig:
    """Defaults of the Euler sampler (``flow.sampler``; validation sampling and ``scripts/sample.py``, whose
    ``null`` settings take these; see :mod:`flowbb.flow.sampler`).

    Attributes:
        num_steps: Euler steps from min_t to 1.
        rot_rate: rotation "exp" schedule rate (R <- R exp(dt * rate * log(R^T R1_hat))).
        noise_scale: stochastic term (0 = ODE): Gaussian of std noise_scale * sqrt(dt) * trans_scale Å
            on translations (centred per chain), IGSO3 of sigma noise_scale * sqrt(dt) rad on rotations.
        self_condition: feed the previous clean translation prediction as ``sc_trans``.
        clash_guidance: fraction of each trace-atom overlap of the clean prediction removed per step (0: off;
            :mod:`flowbb.flow.guidance`).
        clash_guidance_min_t: the guidance acts at grid times t >= this (earlier, the clean prediction is still a
            blur whose overlaps say nothing; pushing it apart there costs secondary structure).
        langevin_rate: rate c of the Langevin term on translations (0: off): drift ``-c (x_t - t x1_hat)``, the
            score of the Gaussian path times ``g = c (1 - t)^2 trans_scale^2`` (:mod:`flowbb.flow.sampler`).
        temperature: gamma, the Langevin noise ``sqrt(2 g gamma)``: 1 keeps the flow's marginals, < 1 samples at a
            lower temperature (only with langevin_rate > 0).
    """

    num_steps: int = 100
    rot_rate: float = 10.0
    noise_scale: float = 0.0
    self_condition: bool = True
    clash_guidance: float = 0.0
    clash_guidance_min_t: float = 0.5
    langevin_rate: float = 0.0
    temperature: float = 1.0

    def __post_init__(self) -> None:
        _check_nonneg("sampler", self, ("noise_scale", "clash_guidance", "langevin_rate", "temperature"))
        if not 0.0 <= self.clash_guidance_min_t <= 1.0:
            raise ValueError(f"flow.sampler.clash_guidance_min_t must be in [0, 1], got {self.clash_guidance_min_t}")
        _check_positive_int("sampler", self, ("num_steps",))


GROUPS: dict[str, type] = {"path": PathConfig, "losses": LossConfig, "sampler": SamplerConfig}


@dataclasses.dataclass
class FlowConfig:
    """The flow config: ``path`` (:class:`PathConfig`), ``losses`` (:class:`LossConfig`), ``sampler``
    (:class:`SamplerConfig`). Build it with the dataclasses (``FlowConfig(path=PathConfig(coupling="ot"))``) or
    from a config mapping with :func:`as_flow_config`."""

    path: PathConfig = dataclasses.field(default_factory=PathConfig)
    losses: LossConfig = dataclasses.field(default_factory=LossConfig)
    sampler: SamplerConfig = dataclasses.field(default_factory=SamplerConfig)

    def __post_init__(self) -> None:
        for name, cls in GROUPS.items():
            if not isinstance(getattr(self, name), cls):
                raise TypeError(f"flow config: flow.{name} must be a {cls.__name__}, got "
                                f"{type(getattr(self, name)).__name__} (convert mappings with as_flow_config)")


# The flat keys of checkpoints written before the nesting -> (group, field).
LEGACY_KEYS: dict[str, tuple[str, str]] = {
    "coupling": ("path", "coupling"),
    "min_t": ("path", "min_t"),
    "trans_scale": ("path", "trans_scale"),
    "self_condition_prob": ("path", "self_condition_prob"),
    "sfm_g_trans": ("path", "sfm_g_trans"),
    "sfm_sigma_min_trans": ("path", "sfm_sigma_min_trans"),
    "sfm_g_rots": ("path", "sfm_g_rots"),
    "sfm_sigma_min_rots": ("path", "sfm_sigma_min_rots"),
    "sfm_ot": ("path", "sfm_ot"),
    "ot_rot_weight": ("path", "ot_rot_weight"),
    "length_scale": ("losses", "length_scale"),
    "loss_t_clip": ("losses", "t_clip"),
    "loss_trans_weight": ("losses", "trans_weight"),
    "loss_rot_weight": ("losses", "rot_weight"),
    "loss_bb_atom_weight": ("losses", "bb_atom_weight"),
    "loss_pair_dist_weight": ("losses", "pair_dist_weight"),
    "loss_clash_weight": ("losses", "clash_weight"),
    "loss_torsion_weight": ("losses", "torsion_weight"),
    "aux_t_threshold": ("losses", "aux_t_threshold"),
    "pair_dist_k": ("losses", "pair_dist_k"),
    "knn_chunk_size": ("losses", "knn_chunk_size"),
    "loss_t_bins": ("losses", "t_bins"),
    "sample_num_steps": ("sampler", "num_steps"),
    "sample_rot_rate": ("sampler", "rot_rate"),
    "sample_noise_scale": ("sampler", "noise_scale"),
    "sample_self_condition": ("sampler", "self_condition"),
}
LEGACY_TARGET = "_target_"  # the flat checkpoints also stored ``_target_: flowbb.flow.config.FlowConfig``


def _mapping(cfg: Any, where: str) -> dict[str, Any]:
    """A mapping as a ``dict`` with string keys; ``TypeError`` naming ``where`` otherwise."""
    if not isinstance(cfg, Mapping):
        raise TypeError(f"flow config: {where} must be a mapping, got {type(cfg).__name__}")
    return {str(k): v for k, v in cfg.items()}


def _group(name: str, values: Any) -> Any:
    cls = GROUPS[name]
    values = _mapping(values, f"flow.{name}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"flow config: unknown key(s) {[f'flow.{name}.{k}' for k in unknown]}; "
                         f"flow.{name} holds {sorted(known)}")
    return cls(**values)


def _from_legacy(values: dict[str, Any]) -> FlowConfig:
    groups: dict[str, dict[str, Any]] = {name: {} for name in GROUPS}
    for key, value in values.items():
        if key == LEGACY_TARGET:
            continue
        group, field = LEGACY_KEYS[key]
        groups[group][field] = value
    return FlowConfig(**{name: GROUPS[name](**kw) for name, kw in groups.items()})


def as_flow_config(cfg: FlowConfig | Mapping[str, Any] | None = None) -> FlowConfig:
    """The one converter: a :class:`FlowConfig` from where a config enters flowbb.

    Args:
        cfg: a ``FlowConfig`` (returned as is); a mapping / ``DictConfig`` of the groups ``path``, ``losses``,
            ``sampler`` (each optional, missing keys take the defaults); the flat mapping of a checkpoint written
            before the nesting (:data:`LEGACY_KEYS`, with or without its ``_target_``); or ``None`` (defaults).
    Raises:
        ValueError: an unknown key (named with its place, e.g. ``flow.losses.clash_wieght``), a mapping that mixes
            groups and flat keys, or a value the dataclasses refuse.
        TypeError: ``cfg`` or a group is not a mapping.
    """
    if cfg is None:
        return FlowConfig()
    if isinstance(cfg, FlowConfig):
        return cfg
    values = _mapping(to_plain(cfg), "flow")  # DictConfig -> dict, interpolations resolved
    flat = sorted(k for k in values if k in LEGACY_KEYS or k == LEGACY_TARGET)
    nested = sorted(k for k in values if k in GROUPS)
    unknown = sorted(set(values) - set(flat) - set(nested))
    if unknown:
        raise ValueError(f"flow config: unknown key(s) {[f'flow.{k}' for k in unknown]}; the flow config holds "
                         f"the groups {sorted(GROUPS)} (or, in checkpoints written before them, the flat keys "
                         f"{sorted(LEGACY_KEYS)})")
    if flat and nested:
        moved = [f"{k} -> flow.{'.'.join(LEGACY_KEYS[k])}" for k in flat if k in LEGACY_KEYS]
        raise ValueError(f"flow config: mixes the groups {nested} with the old flat keys {flat}; "
                         f"use the groups ({', '.join(moved) or 'drop _target_'})")
    if flat:
        return _from_legacy(values)
    return FlowConfig(**{name: _group(name, values.get(name, {})) for name in GROUPS})


def flow_config_or_default(cfg: FlowConfig | None, where: str) -> FlowConfig:
    """``cfg`` itself (``None``: the defaults); anything else is refused with a ``TypeError`` that points to
    :func:`as_flow_config`. A check, not a conversion: the functions inside flowbb take a :class:`FlowConfig`."""
    if cfg is None:
        return FlowConfig()
    if not isinstance(cfg, FlowConfig):
        raise TypeError(f"{where}: expected a FlowConfig, got {type(cfg).__name__}; convert a config mapping once "
                        "with flowbb.flow.config.as_flow_config")
    return cfg
