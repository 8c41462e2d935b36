"""Load a flowbb training checkpoint as a ready-to-sample network (no Lightning import).

A flowbb checkpoint is a Lightning checkpoint written while training :class:`flowbb.training.module.FlowModule`:

- ``hyper_parameters["cfg"]``: the resolved training config (``model``, ``flow``, ``seed``, ...);
- ``state_dict``: the module's weights; the network's are under the ``model.`` prefix (raw training weights);
- ``ema_state_dict``: the EMA weights of the network, keyed like ``FlowModel.state_dict()``
  (written by :class:`flowbb.training.ema.EMA`), with ``ema_num_updates``.

:func:`load_checkpoint` rebuilds the network from ``cfg.model`` with :func:`build_model` (``_target_`` instantiation;
the training module builds its network with the same function), loads the EMA weights by default (or the raw ones),
puts it in eval mode on the requested device (:func:`flowbb.inference.device.resolve_device`) and returns it with the
config and the flow config. Anything that is not such a file (a missing path, a file ``torch.load`` cannot read,
another Lightning module's checkpoint, weights that do not fit the stored model config) raises one
:class:`FlowbbCheckpointError` naming the path and what is wrong.

Loading is safe by default: ``torch.load(weights_only=True)`` only, which rebuilds tensors, containers and plain
values and runs no code from the file (flowbb's checkpoints hold nothing else). A file with other pickled objects is
refused with a one-line error unless the caller asks for full unpickling by name (``trust=True``; the CLIs'
``trust_checkpoint=true``).
"""

from __future__ import annotations

import dataclasses
import logging
import pickle
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from flowbb.errors import UserError
from flowbb.flow.config import FlowConfig, as_flow_config
from flowbb.inference.device import resolve_device
from flowbb.molecules import molecule_of_config
from flowbb.molecules.base import Molecule

log = logging.getLogger(__name__)

# The checkpoint format, defined here and imported by training (flowbb.training.ema writes these keys,
# flowbb.training.module builds its network with build_model), so that loading a checkpoint to sample never imports
# Lightning (15-20 s on a busy CPU).
EMA_KEY = "ema_state_dict"  # the EMA weights of the network, keyed like FlowModel.state_dict()
EMA_UPDATES_KEY = "ema_num_updates"  # EMA updates behind them
MODEL_PREFIX = "model."  # FlowModule keeps the network as ``self.model``


def build_model(model_cfg: Mapping[str, Any] | DictConfig) -> torch.nn.Module:
    """The network from the ``model`` config group (``_target_`` instantiation): the one builder of training
    (:class:`flowbb.training.module.FlowModule`), resume checks and checkpoint loading."""
    import hydra

    return hydra.utils.instantiate(model_cfg, _convert_="all")


class FlowbbCheckpointError(UserError, RuntimeError):
    """A checkpoint path that cannot be loaded as a flowbb model (the message names the path and the reason)."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot load flowbb checkpoint {self.path}: {reason}")


@dataclasses.dataclass
class LoadedCheckpoint:
    """What :func:`load_checkpoint` returns.

    Attributes:
        model: the FlowModel (eval mode, no gradients, on ``device``).
        cfg: the training config stored in the checkpoint (resolved, as a ``DictConfig``).
        flow_cfg: ``cfg.flow`` as a :class:`~flowbb.flow.config.FlowConfig` (sampler defaults, prior scale): the one
            conversion of a stored config (checkpoints written before the nested config hold the old flat keys,
            which :func:`~flowbb.flow.config.as_flow_config` maps to their places).
        path: the checkpoint file.
        device: where the model lives.
        weights: ``"ema"`` or ``"raw"`` (what was loaded into ``model``).
        global_step: optimizer steps of the run when the checkpoint was written (-1 when not recorded).
        ema_num_updates: EMA updates behind the EMA weights (0 when there are none).
        molecule: the molecule type the model generates (:func:`flowbb.molecules.molecule_of_config` of ``cfg``).
    """

    model: torch.nn.Module
    cfg: DictConfig
    flow_cfg: FlowConfig
    path: Path
    device: torch.device
    weights: str
    global_step: int
    ema_num_updates: int
    molecule: Molecule

    def model_fn(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``model(batch)``: the ``model_fn`` that :func:`flowbb.flow.sampler.sample` takes."""
        return self.model(batch)


TRUST_HINT = "trust_checkpoint=true"


def _unsafe_reason(exc: Exception) -> str:
    """The first thing the weights-only unpickler refused (e.g. ``GLOBAL mypkg.MyClass``), on one line."""
    found = re.search(r"GLOBAL ([\w.<>]+)", str(exc))
    if found:
        return f"a pickled Python object ({found.group(1)})"
    first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
    return f"pickled Python objects ({first})"


def _read(path: Path, trust: bool = False) -> Any:
    """``torch.load`` on CPU with the weights-only unpickler (tensors, containers and plain values only), which runs
    no code from the file. flowbb's own checkpoints load this way. A file holding other pickled objects is refused
    unless ``trust=True``, which loads it with full unpickling (that can run arbitrary code from the file).

    Raises:
        FlowbbCheckpointError: the file holds objects the weights-only unpickler refuses and ``trust`` is false.
    """
    if trust:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return torch.load(path, map_location="cpu", weights_only=False)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise FlowbbCheckpointError(
            path, f"it holds {_unsafe_reason(exc)}, and unpickling it could run code from the file; "
                  f"if you trust its source, pass {TRUST_HINT} (Python: trust=True)") from None


def read_checkpoint(path: str | Path, trust: bool = False) -> dict[str, Any]:
    """The raw checkpoint dict of a flowbb checkpoint, after checking its format.

    Args:
        path: the ``.ckpt`` file.
        trust: allow full unpickling of objects beyond tensors and containers (can run code from the file; only
            for checkpoints from a trusted source). flowbb's own checkpoints never need it.
    Raises:
        FlowbbCheckpointError: missing file, unreadable file, untrusted pickled objects, or not a flowbb training
            checkpoint.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise FlowbbCheckpointError(p, "no such file")
    if p.is_dir():
        raise FlowbbCheckpointError(p, "is a directory, expected a .ckpt file (e.g. <run_dir>/checkpoints/last.ckpt)")
    try:
        ckpt = _read(p, trust=trust)
    except FlowbbCheckpointError:
        raise
    except Exception as exc:  # any reader failure means "not a checkpoint"
        raise FlowbbCheckpointError(p, f"not a readable PyTorch checkpoint ({type(exc).__name__}: "
                                       f"{str(exc).splitlines()[0][:200] if str(exc) else ''})") from exc
    if not isinstance(ckpt, Mapping):
        raise FlowbbCheckpointError(p, f"expected a Lightning checkpoint dict, found a {type(ckpt).__name__}")
    if "state_dict" not in ckpt:
        raise FlowbbCheckpointError(p, f"no 'state_dict' entry, so not a Lightning checkpoint "
                                       f"(top-level keys: {sorted(map(str, ckpt))[:8]})")
    hp = ckpt.get("hyper_parameters")
    cfg = hp.get("cfg") if isinstance(hp, Mapping) else None
    if not isinstance(cfg, Mapping) or not isinstance(cfg.get("model"), Mapping) or "flow" not in cfg:
        raise FlowbbCheckpointError(p, "no flowbb training config (hyper_parameters['cfg'] with 'model' and 'flow'): "
                                       "a checkpoint of another model or LightningModule")
    if "_target_" not in cfg["model"]:
        raise FlowbbCheckpointError(p, "the stored model config has no _target_")
    if not any(str(k).startswith(MODEL_PREFIX) for k in ckpt["state_dict"]):
        raise FlowbbCheckpointError(p, f"the state_dict has no '{MODEL_PREFIX}*' weights: a checkpoint of another "
                                       "LightningModule")
    return dict(ckpt)


def _load_weights(model: torch.nn.Module, state: Mapping[str, torch.Tensor], path: Path, what: str) -> None:
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[:3]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})")
        if wrong:
            k = wrong[0]
            parts.append(f"{len(wrong)} with other shapes (e.g. {k}: {tuple(state[k].shape)} in the file, "
                         f"{tuple(own[k].shape)} in the model)")
        raise FlowbbCheckpointError(path, f"the {what} weights do not fit the model built from the stored config "
                                          f"({model.__class__.__name__}): " + "; ".join(parts))
    model.load_state_dict(state, strict=True)


def load_checkpoint(path: str | Path, use_ema: bool = True, device: str | torch.device | None = "auto",
                    trust: bool = False) -> LoadedCheckpoint:
    """Rebuild the trained network from a flowbb checkpoint.

    Args:
        path: a ``.ckpt`` written by flowbb training (e.g. ``runs/<name>/checkpoints/last.ckpt``).
        use_ema: load the EMA weights (default); ``False`` loads the raw training weights. A checkpoint without
            EMA weights (EMA callback disabled) falls back to the raw ones with a warning; ``weights`` says which.
        device: ``"auto"`` (CUDA, else MPS, else CPU), or any ``torch.device`` spec.
        trust: allow full unpickling (see :func:`read_checkpoint`); never needed for flowbb's own checkpoints.
    Returns:
        :class:`LoadedCheckpoint` (model in eval mode with ``requires_grad=False``).
    Raises:
        FlowbbCheckpointError: the path is missing or not a flowbb checkpoint, or its weights do not fit its config.
    """
    p = Path(path).expanduser()
    ckpt = read_checkpoint(p, trust=trust)
    cfg = OmegaConf.create(dict(ckpt["hyper_parameters"]["cfg"]))
    try:
        model = build_model(cfg.model)
    except Exception as exc:  # the stored config names a model this flowbb cannot build
        raise FlowbbCheckpointError(p, f"cannot build the model of the stored config "
                                       f"(_target_={cfg.model.get('_target_')}): {type(exc).__name__}: {exc}") from exc
    if not isinstance(model, torch.nn.Module):
        raise FlowbbCheckpointError(p, f"the stored model config builds a {type(model).__name__}, not a torch module")
    try:
        flow_cfg = as_flow_config(cfg.flow)
    except (TypeError, ValueError) as exc:
        raise FlowbbCheckpointError(p, f"invalid stored flow config: {exc}") from exc
    try:
        molecule = molecule_of_config(cfg)
    except ValueError as exc:
        raise FlowbbCheckpointError(p, f"stored config: {exc}") from exc

    weights = "raw"
    ema_updates = int(ckpt.get(EMA_UPDATES_KEY, 0) or 0)
    if use_ema and isinstance(ckpt.get(EMA_KEY), Mapping):
        _load_weights(model, ckpt[EMA_KEY], p, "EMA")
        weights = "ema"
    else:
        if use_ema:
            log.warning("%s has no EMA weights (was the ema callback disabled?); using the raw training weights", p)
        raw = {k[len(MODEL_PREFIX):]: v for k, v in ckpt["state_dict"].items() if str(k).startswith(MODEL_PREFIX)}
        _load_weights(model, raw, p, "raw")

    dev = resolve_device(device)
    model = model.to(dev).eval()
    for param in model.parameters():
        param.requires_grad_(False)
    return LoadedCheckpoint(model=model, cfg=cfg, flow_cfg=flow_cfg, path=p, device=dev, weights=weights,
                            global_step=int(ckpt.get("global_step", -1)), ema_num_updates=ema_updates,
                            molecule=molecule)
