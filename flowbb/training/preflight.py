"""Checks that run before a training launch writes anything or builds a model: the values of the main keys and the
hardware they ask for (:func:`check_launch`), which checkpoint the launch starts from, and whether that checkpoint fits
it (:func:`plan_resume`).

:func:`check_launch` refuses a float16 precision, ``trainer=gpu`` (or any CUDA accelerator) on a machine without
CUDA, more GPUs than the machine has, and main keys of the wrong type (``trainer.max_steps=five``).

:func:`plan_resume` finds the checkpoint (``ckpt_path`` or ``<run_dir>/checkpoints/last.ckpt``), reads it with the
safe loader (:func:`flowbb.inference.checkpoint.read_checkpoint`) and refuses, with one line naming the cause and the
way out (:class:`flowbb.errors.UserError`):

- a checkpoint of **another model**: the stored ``hyper_parameters["cfg"]["model"]`` differs from the new
  ``model`` config (keys both hold with other values), or, where one config has keys the other lacks (a newer
  flowbb), the network the new config builds does not take the checkpoint's weights;
- ``trainer.max_steps`` **below the step** the checkpoint is at (it would train nothing and say nothing).

Nothing in the run folder changes on a refused launch: ``train()`` calls this before it seeds (which logs to
``train.log``), writes ``config_resolved.yaml`` or ``.hydra/``, or builds loggers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from flowbb.errors import UserError
from flowbb.inference.checkpoint import MODEL_PREFIX, FlowbbCheckpointError, build_model, read_checkpoint

LAST_CKPT = Path("checkpoints") / "last.ckpt"
_MISSING = object()
# main keys and the type they must have: a wrong type otherwise fails deep inside Lightning or the model
_TYPED_KEYS: dict[str, tuple[type, ...]] = {
    "seed": (int,), "trainer.max_steps": (int,), "trainer.num_nodes": (int,), "optim.lr": (int, float),
    "optim.warmup_steps": (int,), "data.batcher.max_tokens": (int,), "guard.max_consecutive_skips": (int,),
}


def _check_types(cfg: DictConfig) -> None:
    for key, types in _TYPED_KEYS.items():
        value = OmegaConf.select(cfg, key, default=None)
        if value is not None and (isinstance(value, bool) or not isinstance(value, types)):
            kind = "a whole number" if types == (int,) else "a number"
            raise UserError(f"{key}={value}: expected {kind}")


def _check_hardware(trainer_cfg: DictConfig) -> None:
    import torch

    accelerator = str(trainer_cfg.get("accelerator", "cpu"))
    precision = str(trainer_cfg.get("precision", "32-true"))
    if precision.startswith("16"):
        raise UserError(f"trainer.precision={precision}: float16 needs loss scaling, which the non-finite guard's "
                        "manual optimisation does not do; use bf16-mixed (GPU) or 32-true")
    if accelerator not in ("gpu", "cuda"):
        return
    if not torch.cuda.is_available():
        raise UserError(f"trainer.accelerator={accelerator} (trainer=gpu/ddp) but no CUDA GPU is available here "
                        f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'none'}): train on CPU with "
                        "trainer=cpu (or trainer=auto), or run on a machine with a GPU")
    devices = trainer_cfg.get("devices", 1)
    if isinstance(devices, int) and devices > torch.cuda.device_count():
        raise UserError(f"trainer.devices={devices} but this machine has {torch.cuda.device_count()} GPU(s): use "
                        f"trainer.devices={torch.cuda.device_count()} or trainer.devices=-1 (all)")


def resolve_auto_trainer(cfg: DictConfig) -> str | None:
    """``trainer=auto``: fill in ``trainer.accelerator`` / ``trainer.precision`` left at ``auto``, in place: one
    CUDA GPU with ``bf16-mixed`` when available (``32-true`` on a GPU without bf16), else ``cpu`` with ``32-true``.

    Returns:
        A line saying what was chosen, or ``None`` when nothing was ``auto``.
    """
    import torch

    trainer = cfg.trainer
    if trainer.get("accelerator") != "auto" and trainer.get("precision") != "auto":
        return None
    cuda = torch.cuda.is_available() and trainer.get("accelerator") in ("auto", "gpu", "cuda")
    if trainer.get("accelerator") == "auto":
        trainer.accelerator = "gpu" if cuda else "cpu"
    if trainer.get("precision") == "auto":
        trainer.precision = "bf16-mixed" if cuda and torch.cuda.is_bf16_supported() else "32-true"
    where = f"one CUDA GPU ({torch.cuda.get_device_name(0)})" if cuda else "CPU (no CUDA GPU found)"
    return f"trainer=auto: {where}, precision {trainer.precision}"


def check_launch(cfg: DictConfig) -> None:
    """Key types and hardware (see the module docstring), before anything is built or written.

    Raises:
        UserError: one line naming the key and the fix.
    """
    _check_types(cfg)
    _check_hardware(cfg.trainer)


@dataclasses.dataclass(frozen=True)
class ResumePlan:
    """Where a launch starts: ``ckpt`` (``None``: a fresh start), the checkpoint's ``step``, and whether it is the run
    folder's own ``last.ckpt`` (``in_run_dir``) or a ``ckpt_path`` given by the user."""

    ckpt: str | None
    step: int = 0
    in_run_dir: bool = False


def config_differences(old: Any, new: Any, prefix: str = "model") -> list[tuple[str, Any, Any]]:
    """``(key, old value, new value)`` for every leaf where two nested configs differ (``_MISSING`` on the side
    that lacks the key), in key order."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        out: list[tuple[str, Any, Any]] = []
        for key in sorted(set(old) | set(new), key=str):
            out += config_differences(old.get(key, _MISSING), new.get(key, _MISSING), f"{prefix}.{key}")
        return out
    if isinstance(old, list | tuple) and isinstance(new, list | tuple):
        old, new = list(old), list(new)
    return [] if old == new else [(prefix, old, new)]


def _show(value: Any) -> str:
    return "absent" if value is _MISSING else repr(value)


def _weights_fit(model_cfg: Mapping[str, Any], state_dict: Mapping[str, Any]) -> str | None:
    """``None`` when the network built from ``model_cfg`` takes the checkpoint's weights, else what does not fit."""
    try:
        own = build_model(model_cfg).state_dict()
    except Exception as exc:  # noqa: BLE001 -- an unbuildable model config is reported, not raised here
        return f"the new model config does not build ({type(exc).__name__}: {exc})"
    saved = {k[len(MODEL_PREFIX):]: v for k, v in state_dict.items() if str(k).startswith(MODEL_PREFIX)}
    if set(own) != set(saved):
        return f"{len(set(own) ^ set(saved))} weight names differ (e.g. {min(set(own) ^ set(saved))})"
    wrong = sorted(k for k in own if tuple(own[k].shape) != tuple(saved[k].shape))
    if wrong:
        k = wrong[0]
        return (f"{len(wrong)} weights have other shapes (e.g. {k}: {tuple(saved[k].shape)} in the checkpoint, "
                f"{tuple(own[k].shape)} now)")
    return None


def model_mismatch(stored: Mapping[str, Any], new: Mapping[str, Any], state_dict: Mapping[str, Any]) -> str | None:
    """Why a checkpoint with ``stored`` model config (and weights ``state_dict``) is not the ``new`` model; ``None``
    when it is. Keys both configs hold must agree; keys only one side holds are accepted when the new network takes
    the checkpoint's weights."""
    diffs = config_differences(stored, new)
    both = [d for d in diffs if d[1] is not _MISSING and d[2] is not _MISSING]
    if both:
        shown = "; ".join(f"{k}: {_show(a)} in the checkpoint, {_show(b)} now" for k, a, b in both[:3])
        return shown + (f" (+{len(both) - 3} more)" if len(both) > 3 else "")
    if diffs:
        return _weights_fit(new, state_dict)
    return None


def find_checkpoint(run_dir: Path, ckpt_path: str | None) -> tuple[Path | None, bool]:
    """``(checkpoint, in_run_dir)``: ``ckpt_path`` when given (must be a file), else ``<run_dir>/checkpoints/last.ckpt``
    when it exists, else ``None``."""
    if ckpt_path:
        path = Path(str(ckpt_path)).expanduser()
        if not path.is_file():
            raise UserError(f"ckpt_path={ckpt_path}: no checkpoint file there (a run's checkpoint is "
                            f"<run_dir>/{LAST_CKPT}); fix the path, or drop ckpt_path to start fresh")
        return path, False
    last = run_dir / LAST_CKPT
    return (last, True) if last.is_file() else (None, False)


def plan_resume(cfg: DictConfig, run_dir: Path) -> ResumePlan:
    """Find and check the checkpoint a launch starts from; see the module docstring.

    Raises:
        UserError: a missing ``ckpt_path``, an unreadable or untrusted checkpoint, another model, or
            ``trainer.max_steps`` below the checkpoint's step. Nothing is written.
    """
    path, in_run_dir = find_checkpoint(run_dir, cfg.get("ckpt_path"))
    if path is None:
        return ResumePlan(ckpt=None)
    try:
        ckpt = read_checkpoint(path, trust=bool(cfg.get("trust_checkpoint", False)))
    except FlowbbCheckpointError as exc:
        raise UserError(f"{exc}" + ("" if not in_run_dir else
                                    "; to start a new run instead, give name=<new> or hydra.run.dir=<dir>")) from None
    stored = ckpt["hyper_parameters"]["cfg"]["model"]
    new = OmegaConf.to_container(cfg.model, resolve=True)
    why = model_mismatch(stored, new, ckpt["state_dict"])
    if why is not None:
        if in_run_dir:
            raise UserError(
                f"run folder {run_dir} holds a checkpoint of another model ({why}); nothing was changed. Start a new "
                f"run with name=<new> or hydra.run.dir=<dir> (to continue training this checkpoint there with the "
                f"same model, add ckpt_path={path}), or relaunch here with the model it was trained with")
        raise UserError(f"ckpt_path={path} is a checkpoint of another model ({why}): launch with the model it was "
                        f"trained with (its config is hyper_parameters['cfg']['model'] in the file), or drop ckpt_path")
    step = int(ckpt.get("global_step", 0))
    max_steps = int(cfg.trainer.get("max_steps", -1))
    if 0 <= max_steps < step:
        where = f"run folder {run_dir}" if in_run_dir else f"ckpt_path={path}"
        raise UserError(f"{where} is at step {step}, beyond trainer.max_steps={max_steps}: nothing would be trained; "
                        f"pass trainer.max_steps greater than {step} to continue, or start a new run with name=<new>")
    return ResumePlan(ckpt=str(path), step=step, in_run_dir=in_run_dir)
