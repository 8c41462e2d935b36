"""Command-line helpers shared by ``train.py`` and ``scripts/*``: the command line checked before Hydra runs.

Hydra reports a mistyped key, an unknown config option or an unparsable override with several lines and exit code 1.
:func:`check_command_line` composes the config once with the same overrides and turns those errors, and required
keys left at ``???``, into a :class:`flowbb.errors.UserError` with one line naming the cause and the fix; the CLIs
print it and exit 2 (:func:`exit_on_bad_command_line`).
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Sequence
from pathlib import Path

from flowbb.errors import UserError, report_user_error

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def _suggestion(key: str, overrides: Sequence[str], config_name: str) -> str:
    """`` (did you mean a.b?)`` from the keys beside ``key`` in the config composed without the override."""
    from hydra import compose, initialize_config_dir
    from omegaconf import DictConfig, OmegaConf

    parent, _, leaf = key.rpartition(".")
    kept = [o for o in overrides if not o.lstrip("+~").startswith(f"{key}=")]
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=kept)
        node = OmegaConf.select(cfg, parent) if parent else cfg
    except Exception:  # noqa: BLE001 -- a suggestion is optional
        return ""
    if not isinstance(node, DictConfig):
        return ""
    close = difflib.get_close_matches(leaf, [str(k) for k in node], n=1, cutoff=0.6)
    return f" (did you mean {parent + '.' if parent else ''}{close[0]}?)" if close else ""


def describe_hydra_error(exc: Exception, overrides: Sequence[str], config_name: str) -> str:
    """One line for a Hydra composition or override-parsing error."""
    from hydra.errors import MissingConfigException, OverrideParseException
    from omegaconf.errors import ConfigKeyError

    text = str(exc)
    if isinstance(exc, MissingConfigException) and exc.options:
        missing = text.split("Could not find '", 1)[-1].split("'", 1)[0]
        group, _, name = missing.rpartition("/")
        return f"{group}={name}: no such option; choose one of {', '.join(exc.options)}"
    if isinstance(exc, OverrideParseException):
        token = text.split("'", 2)[1] if text.count("'") >= 2 else ""
        bad = next((o for o in overrides if token and token in o), token or " ".join(overrides))
        return (f"cannot parse the command-line override '{bad}': write key=value (lists as key=[1,2]); "
                "see https://hydra.cc/docs/advanced/override_grammar/basic/")
    if isinstance(exc.__cause__, ConfigKeyError) or "is not in struct" in text or "Could not override" in text:
        key = text.split("'", 2)[1] if text.count("'") >= 2 else "?"
        arg = next((o for o in overrides if o.lstrip("+~").startswith(f"{key}=")), key)
        return (f"unknown config key {key}{_suggestion(key, overrides, config_name)}: check its spelling "
                f"(`--cfg job` prints the config), or add a new key with +{arg.lstrip('+~')}")
    return " ".join(text.split())


def _missing_keys(node: object, prefix: str = "") -> list[str]:
    """Dotted keys left at ``???`` in a config container (not resolving interpolations)."""
    if isinstance(node, dict):
        return [k for key, value in node.items() for k in _missing_keys(value, f"{prefix}{key}.")]
    return [prefix[:-1]] if node == "???" else []


def check_command_line(config_name: str, overrides: Sequence[str]) -> None:
    """Compose ``configs/<config_name>.yaml`` with ``overrides`` as Hydra will.

    Raises:
        UserError: a mistyped key, an unknown group option, an override that does not parse, or a required key
            (``???``) not given.
    """
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf

    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=list(overrides))
    except HydraException as exc:
        raise UserError(describe_hydra_error(exc, overrides, config_name)) from None
    missing = _missing_keys(OmegaConf.to_container(cfg, resolve=False))
    if missing:
        raise UserError(f"{missing[0]} is required: add {missing[0]}=<value> to the command "
                        f"(keys and defaults: configs/{config_name}.yaml)")


def exit_on_bad_command_line(config_name: str, argv: Sequence[str] | None = None) -> None:
    """:func:`check_command_line` on ``sys.argv[1:]``; on a :class:`UserError` print one line and exit 2. Command
    lines with Hydra flags (``--help``, ``--cfg``, ``-m``, ...) are left to Hydra."""
    args = list(sys.argv[1:] if argv is None else argv)
    if any(a.startswith("-") for a in args):
        return
    try:
        check_command_line(config_name, args)
    except UserError as exc:
        sys.exit(report_user_error(exc))
