"""Plain Python values from configuration containers (one home: data, eval and flow configs use it)."""

from __future__ import annotations

from typing import Any


def to_plain(value: Any) -> Any:
    """OmegaConf ``DictConfig`` / ``ListConfig`` -> plain dicts / lists with interpolations resolved; any other value
    is returned as it is."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value
