"""Experiment loggers: W&B (online only when a key and the network exist, offline otherwise) plus CSV.

``build_loggers(logger_cfg, run_dir)`` turns the ``logger`` config group into Lightning loggers:

- ``logger=wandb`` (default): a :class:`~lightning.pytorch.loggers.WandbLogger` whose mode is chosen by
  :func:`resolve_wandb_mode` (``mode: auto``), and always a CSV logger beside it, so the run directory
  holds CSV metrics whatever happens to W&B;
- ``logger=csv``: the CSV logger only;
- ``logger=none``: no logger at all.

The CSV logger writes ``<run_dir>/metrics.csv`` and keeps appending to it when a run is resumed
(Lightning's own CSV logger deletes an existing ``metrics.csv``).
"""

from __future__ import annotations

import csv
import http.client
import logging
import netrc
import os
import secrets
import ssl
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_only

from flowbb.errors import UserError

log = logging.getLogger(__name__)

DEFAULT_WANDB_URL = "https://api.wandb.ai"
WANDB_ID_FILE = "wandb_run_id.txt"


def wandb_url() -> str:
    """URL of the W&B server (``WANDB_BASE_URL`` or ``https://api.wandb.ai``)."""
    return os.environ.get("WANDB_BASE_URL", "").strip() or DEFAULT_WANDB_URL


def wandb_host() -> str:
    """Host name of the W&B server."""
    return urlparse(wandb_url()).hostname or "api.wandb.ai"


def has_wandb_key(host: str | None = None) -> bool:
    """True when ``WANDB_API_KEY`` is set or a netrc file holds credentials for the W&B host."""
    if os.environ.get("WANDB_API_KEY", "").strip():
        return True
    host = host or wandb_host()
    path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    if not path.is_file():
        return False
    try:
        return netrc.netrc(str(path)).authenticators(host) is not None
    except (netrc.NetrcParseError, OSError):
        return False


def can_reach(url: str, timeout_s: float = 2.0) -> bool:
    """True when the server at ``url`` answers an HTTP request within ``timeout_s`` seconds.

    For ``https`` the TLS certificate must verify for the host (a bare TCP connect proves nothing behind
    intercepting firewalls). Name resolution is not covered by socket timeouts, so the probe runs in a daemon
    thread that is abandoned after ``timeout_s``: the answer never takes longer than that.
    """
    parsed = urlparse(url)
    host = parsed.hostname
    if not host:
        return False
    result: list[bool] = []

    def probe() -> None:
        try:
            if parsed.scheme == "http":
                conn: http.client.HTTPConnection = http.client.HTTPConnection(
                    host, parsed.port or 80, timeout=timeout_s)
            else:
                conn = http.client.HTTPSConnection(host, parsed.port or 443, timeout=timeout_s,
                                                   context=ssl.create_default_context())
            try:
                conn.request("HEAD", "/")
                conn.getresponse()
                result.append(True)
            finally:
                conn.close()
        except (OSError, http.client.HTTPException, ssl.SSLError):
            result.append(False)

    thread = threading.Thread(target=probe, name="wandb-probe", daemon=True)
    thread.start()
    thread.join(timeout_s)
    return bool(result and result[0])


WANDB_ENV_MODES = {"online": "online", "offline": "offline", "disabled": "disabled", "dryrun": "offline",
                   "run": "online"}


def env_wandb_mode() -> str | None:
    """``WANDB_MODE`` from the environment, lower-cased; ``None`` when unset or empty (an empty value counts as
    unset: ``WANDB_MODE= python train.py`` behaves like no ``WANDB_MODE``).

    Raises:
        UserError: a value wandb does not know.
    """
    raw = os.environ.get("WANDB_MODE", "").strip().lower()
    if not raw:
        return None
    if raw not in WANDB_ENV_MODES:
        raise UserError(f"WANDB_MODE={raw}: expected online, offline or disabled (or leave it unset: flowbb then "
                        f"logs online when a key and the network exist, offline otherwise)")
    return raw


def no_key_message(source: str) -> str:
    """The one-line error for online W&B logging without an API key, with the ways out."""
    return (f"W&B is set to online ({source}) but no W&B API key was found; choose one: export WANDB_API_KEY=<key>, "
            f"run `wandb login` once, log offline with WANDB_MODE=offline or logger.wandb.mode=offline "
            f"(`wandb sync` uploads later), or train without W&B with logger=csv")


def resolve_wandb_mode(requested: str = "auto", timeout_s: float = 2.0) -> tuple[str, str]:
    """Pick the W&B mode.

    Args:
        requested: ``auto`` | ``online`` | ``offline`` | ``disabled``.
        timeout_s: socket timeout of the reachability probe.
    Returns:
        ``(mode, reason)``. An explicit ``requested`` mode wins; with ``auto``, ``WANDB_MODE`` from the environment
        when set and not empty, else ``online`` only if a key exists and the server answers within ``timeout_s``,
        else ``offline``.
    Raises:
        UserError: an unknown ``requested`` mode or ``WANDB_MODE``, or ``online`` (asked for explicitly) without an API key: it stops at
            once with the choices instead of wandb's interactive key prompt or a traceback.
    """
    if requested not in {"auto", "online", "offline", "disabled"}:
        raise UserError(f"logger.wandb.mode={requested}: expected auto, online, offline or disabled")
    host = wandb_host()
    if requested != "auto":
        mode, reason = requested, "set in config (logger.wandb.mode)"
    else:
        env_mode = env_wandb_mode()
        if env_mode is not None:
            mode, reason = WANDB_ENV_MODES[env_mode], f"WANDB_MODE={env_mode} in the environment"
        elif not has_wandb_key(host):
            return "offline", "no W&B API key (WANDB_API_KEY or netrc)"
        elif not can_reach(wandb_url(), timeout_s):
            return "offline", f"{host} not reachable within {timeout_s:g} s"
        else:
            return "online", f"API key found and {host} reachable"
    if mode == "online" and not has_wandb_key(host):
        raise UserError(no_key_message(reason))
    return mode, reason


def check_wandb(logger_cfg: Any) -> None:
    """The checks of :func:`resolve_wandb_mode` that need no network (mode values; online without a key), for a
    launch to run before it builds anything. No-op without a ``wandb`` entry.

    Raises:
        UserError: see :func:`resolve_wandb_mode`.
    """
    wandb_cfg = logger_cfg.get("wandb") if logger_cfg else None
    if wandb_cfg is None:
        return
    requested = str(wandb_cfg.get("mode", "auto"))
    if requested != "auto" or env_wandb_mode() is not None:
        resolve_wandb_mode(requested)  # no probe: the mode is given


class _AppendingExperimentWriter(ExperimentWriter):
    """CSV writer that appends to an existing ``metrics.csv`` (keeping its columns) instead of deleting it."""

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as file:
                header = next(csv.reader(file), [])
            self.metrics_keys = sorted(set(header))


class ResumableCSVLogger(CSVLogger):
    """CSV logger writing ``<save_dir>/metrics.csv`` and ``hparams.yaml``; appends across resumed runs."""

    def __init__(self, save_dir: str | Path, flush_logs_every_n_steps: int = 50) -> None:
        super().__init__(save_dir=str(save_dir), name="", version="",
                         flush_logs_every_n_steps=flush_logs_every_n_steps)

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        """The CSV writer (created on first use, on rank 0 only)."""
        if self._experiment is not None:
            return self._experiment
        self._fs.makedirs(self.root_dir, exist_ok=True)
        self._experiment = _AppendingExperimentWriter(log_dir=self.log_dir)
        return self._experiment


def make_wandb_logger(run_dir: str | Path, project: str, name: str | None, entity: str | None,
                      mode: str, probe_timeout_s: float, tags: list[str] | None,
                      log_model: bool) -> WandbLogger | None:
    """W&B logger with the mode resolved by :func:`resolve_wandb_mode`; ``None`` when mode is ``disabled``.

    The run id is kept in ``<run_dir>/wandb_run_id.txt`` so a resumed run continues the same W&B run.
    Files go to ``<run_dir>/wandb/`` (``offline-run-*`` when offline; upload later with ``wandb sync``).
    """
    run_dir = Path(run_dir)
    if "WANDB_MODE" in os.environ and not os.environ["WANDB_MODE"].strip():
        del os.environ["WANDB_MODE"]  # empty counts as unset; wandb itself would reject it when the run starts
    if rank_zero_only.rank == 0:
        mode, reason = resolve_wandb_mode(mode, probe_timeout_s)
        log.info("W&B mode: %s (%s)", mode, reason)
    else:  # only rank 0 ever starts the W&B run; do not probe the network from every process
        mode = "offline" if mode == "auto" else mode
    if mode == "disabled":
        return None
    id_file = run_dir / WANDB_ID_FILE
    run_id = id_file.read_text().strip() if id_file.is_file() else None
    if run_id is None:
        run_id = secrets.token_hex(4)  # W&B run ids: short, lowercase alphanumerics
        if rank_zero_only.rank == 0:
            run_dir.mkdir(parents=True, exist_ok=True)
            id_file.write_text(run_id + "\n")
    return WandbLogger(save_dir=str(run_dir), project=project, name=name, entity=entity, id=run_id,
                       mode=mode, tags=list(tags or []), log_model=log_model, resume="allow")


def build_loggers(logger_cfg: Any, run_dir: str | Path) -> list[Logger]:
    """Loggers for the ``logger`` config group.

    Args:
        logger_cfg: mapping with optional ``csv`` (``flush_logs_every_n_steps``) and ``wandb``
            (``project``, ``entity``, ``name``, ``mode``, ``probe_timeout_s``, ``tags``, ``log_model``) entries;
            empty or ``None`` means no logging.
        run_dir: the run directory.
    Returns:
        A list of loggers (empty for ``logger=none``); whenever W&B is configured a CSV logger is included.
    """
    loggers: list[Logger] = []
    if not logger_cfg:
        return loggers
    csv_cfg = logger_cfg.get("csv")
    wandb_cfg = logger_cfg.get("wandb")
    unknown = set(logger_cfg.keys()) - {"csv", "wandb"}
    if unknown:
        raise UserError(f"logger: unknown entries {sorted(unknown)} (expected csv and/or wandb; logger=none for "
                        "no logging)")
    flush = int(csv_cfg.get("flush_logs_every_n_steps", 50)) if csv_cfg else 50
    if csv_cfg is not None or wandb_cfg is not None:
        loggers.append(ResumableCSVLogger(run_dir, flush_logs_every_n_steps=flush))
    if wandb_cfg is not None:
        wb = make_wandb_logger(run_dir, project=wandb_cfg["project"], name=wandb_cfg.get("name"),
                               entity=wandb_cfg.get("entity"), mode=wandb_cfg.get("mode", "auto"),
                               probe_timeout_s=float(wandb_cfg.get("probe_timeout_s", 2.0)),
                               tags=wandb_cfg.get("tags"), log_model=bool(wandb_cfg.get("log_model", False)))
        if wb is not None:
            loggers.append(wb)
    return loggers
