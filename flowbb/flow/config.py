"""Flat configuration of the flow: prior, coupling, stochastic paths, losses and the Euler sampler.

One dataclass holds every key of the Hydra group ``configs/flow/{base,ot,sfm}.yaml`` (instantiated through
``_target_: flowbb.flow.config.FlowConfig``). :class:`~flowbb.flow.interpolant.Interpolant`,
:func:`~flowbb.flow.losses.flow_losses` and :func:`~flowbb.flow.sampler.sample` all read it; each accepts a
``FlowConfig``, a plain mapping or an OmegaConf ``DictConfig`` with the same keys
(see :func:`as_flow_config`).

Units: lengths in Å (``trans_scale``, ``sfm_g_trans``, ``sfm_sigma_min_trans``), angles in radians,
t in [0, 1] with t = 0 noise and t = 1 data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

COUPLINGS = ("base", "ot", "sfm")


@dataclasses.dataclass
class FlowConfig:
    """All flow keys (flat).

    Prior / path:
        coupling: ``"base"`` (independent noise-data pairs), ``"ot"`` (minibatch optimal transport within
            groups of equal length) or ``"sfm"`` (stochastic paths, paired by OT when ``sfm_ot``,
            as FoldFlow-SFM).
        min_t: training t is uniform in [min_t, 1); sampling integrates from min_t to 1.
        trans_scale: standard deviation (Å) of the Gaussian translation prior (centred per chain).
        self_condition_prob: probability that a training step uses self-conditioning
            (drawn by :meth:`Interpolant.draw_self_condition`).
    Stochastic paths (``coupling="sfm"``), sigma_t = sqrt(g^2 t (1 - t) + sigma_min^2):
        sfm_g_trans, sfm_sigma_min_trans: in Å; isotropic Gaussian noise of std sigma_t per coordinate
            on x_t (centred per chain, so the per-coordinate variance is sigma_t^2 (n - 1) / n
            for n residues).
        sfm_g_rots, sfm_sigma_min_rots: in radians; R_t <- R_t IGSO3(sigma_t) (body-frame noise; for small
            sigma the rotation vector is about N(0, sigma^2 I)).
        sfm_ot: with ``coupling="sfm"``, also pair noise and data by minibatch OT (FoldFlow-SFM does).
    OT cost (``coupling="ot"|"sfm"``):
        ot_rot_weight: weight of the summed squared rotation geodesic against the summed squared aligned
            translation distance (the latter measured in units of ``length_scale``, i.e. nm by default).
    Losses:
        length_scale: Å -> loss units for translations and atoms (0.1: nm, as FrameFlow/FoldFlow).
        loss_t_clip: errors are divided by 1 - min(t, loss_t_clip).
        loss_trans_weight, loss_rot_weight, loss_bb_atom_weight, loss_pair_dist_weight: term weights.
        loss_clash_weight: weight of the ``clash`` term (predicted frame origins closer than the molecule type's
            ``clash_distance`` among each residue's ``pair_dist_k`` nearest predicted neighbours;
            :mod:`flowbb.flow.losses`); 0 leaves it out of ``total`` (it is still computed and logged).
        loss_torsion_weight: weight of the torsion (sin, cos) L2 term of molecule types that have one (RNA).
        aux_t_threshold: backbone-atom, pair-distance, clash and torsion terms only for samples with t > this.
        pair_dist_k: neighbours per residue (kNN on the true CA) for the pair-distance loss.
        knn_chunk_size: query chunk of the neighbour search (memory O(chunk * L)).
        loss_t_bins: number of equal-width t bins for per-t-bin logging.
    Sampler:
        sample_num_steps: Euler steps from min_t to 1.
        sample_rot_rate: rotation "exp" schedule rate (R <- R exp(dt * rate * log(R^T R1_hat))).
        sample_noise_scale: stochastic term (0 = ODE): Gaussian of std noise_scale * sqrt(dt) * trans_scale Å
            on translations (centred per chain), IGSO3 of sigma noise_scale * sqrt(dt) rad on rotations.
        sample_self_condition: feed the previous clean translation prediction as ``sc_trans``.
    """

    coupling: str = "base"
    min_t: float = 0.01
    trans_scale: float = 10.0
    self_condition_prob: float = 0.5
    sfm_g_trans: float = 2.0
    sfm_sigma_min_trans: float = 0.01
    sfm_g_rots: float = 0.2
    sfm_sigma_min_rots: float = 0.01
    sfm_ot: bool = True
    ot_rot_weight: float = 1.0
    length_scale: float = 0.1
    loss_t_clip: float = 0.9
    loss_trans_weight: float = 2.0
    loss_rot_weight: float = 1.0
    loss_bb_atom_weight: float = 0.25
    loss_pair_dist_weight: float = 0.25
    loss_clash_weight: float = 0.0
    loss_torsion_weight: float = 1.0
    aux_t_threshold: float = 0.75
    pair_dist_k: int = 10
    knn_chunk_size: int = 1024
    loss_t_bins: int = 4
    sample_num_steps: int = 100
    sample_rot_rate: float = 10.0
    sample_noise_scale: float = 0.0
    sample_self_condition: bool = True

    def __post_init__(self) -> None:
        if self.coupling not in COUPLINGS:
            raise ValueError(f"flow config: coupling must be one of {COUPLINGS}, got {self.coupling!r}")
        if not 0.0 <= self.min_t < 1.0:
            raise ValueError(f"flow config: min_t must be in [0, 1), got {self.min_t}")
        if not 0.0 <= self.loss_t_clip < 1.0:
            raise ValueError(f"flow config: loss_t_clip must be in [0, 1), got {self.loss_t_clip}")
        if not 0.0 <= self.self_condition_prob <= 1.0:
            raise ValueError(
                f"flow config: self_condition_prob must be in [0, 1], got {self.self_condition_prob}"
            )
        for name in ("trans_scale", "length_scale"):
            if getattr(self, name) <= 0:
                raise ValueError(f"flow config: {name} must be > 0, got {getattr(self, name)}")
        for name in (
            "sfm_g_trans",
            "sfm_sigma_min_trans",
            "sfm_g_rots",
            "sfm_sigma_min_rots",
            "ot_rot_weight",
            "loss_trans_weight",
            "loss_rot_weight",
            "loss_bb_atom_weight",
            "loss_pair_dist_weight",
            "loss_clash_weight",
            "loss_torsion_weight",
            "sample_noise_scale",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"flow config: {name} must be >= 0, got {getattr(self, name)}")
        for name in ("pair_dist_k", "knn_chunk_size", "loss_t_bins", "sample_num_steps"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"flow config: {name} must be >= 1, got {getattr(self, name)}")


_FIELDS = {f.name for f in dataclasses.fields(FlowConfig)}


def as_flow_config(cfg: FlowConfig | Mapping[str, Any] | None = None) -> FlowConfig:
    """A :class:`FlowConfig` from a ``FlowConfig``, a mapping / ``DictConfig`` of flat keys, or ``None``
    (defaults).

    Hydra's ``_target_`` key is ignored; an unknown key raises ``ValueError`` naming it.
    """
    if cfg is None:
        return FlowConfig()
    if isinstance(cfg, FlowConfig):
        return cfg
    if not isinstance(cfg, Mapping):
        try:  # OmegaConf DictConfig is a MutableMapping, but be lenient with other attribute containers
            cfg = dict(cfg)  # type: ignore[arg-type]
        except TypeError as exc:
            raise TypeError(f"flow config: expected FlowConfig or mapping, got {type(cfg).__name__}") from exc
    values = {str(k): v for k, v in cfg.items() if k != "_target_"}
    unknown = sorted(set(values) - _FIELDS)
    if unknown:
        raise ValueError(f"flow config: unknown key(s) {unknown}; known keys: {sorted(_FIELDS)}")
    return FlowConfig(**values)
